"""Shared by the kernel runner's modules: the home directory, the record size,
the log, and this runner's identity (its generation, and what the entrypoint
says of the runner before it)."""
import os
import threading
import uuid

HOME = '/home/work'
CHUNK = 64 * 1024          # max bytes of one stdout/stderr/terminal record

# A new id for every start of the runner: the agent tells runner incarnations
# apart by it (the `hello` record), so output of a dead runner never reaches
# a run of its successor.
GENERATION = uuid.uuid4().hex


def _previous_status():
    """How the runner before this one ended, as the entrypoint saw it (bash's
    $?: the exit status, or 128 + the signal), or None on the first start."""
    raw = os.environ.pop('RUNNER_PREVIOUS_STATUS', '')
    return int(raw) if raw.isdigit() else None


PREVIOUS_STATUS = _previous_status()

# How user code runs (docs/running-code.rst, "User code in the image's Python"):
# CA_USER_PYTHON names the image's interpreter, which then runs query-mode code in a
# child process (user_process.py); CA_KERNEL_MODE=shell runs it with the image's shell;
# without either, user code runs in this runner, as in the images that carry it.
USER_PYTHON = os.environ.get('CA_USER_PYTHON') or None
SHELL_KERNEL = os.environ.get('CA_KERNEL_MODE') == 'shell'
# The shell of batch commands and the terminal: the image's, else bash of this image.
USER_SHELL = os.environ.get('CA_USER_SHELL') or ('/bin/sh' if USER_PYTHON or SHELL_KERNEL else '/bin/bash')

_log_lock = threading.Lock()
_log_fd = 2  # the container's stderr (a dup of it once fd 2 is captured)


def set_log_fd(fd):
    """Points the log at another fd (the runner captures fd 2 for user code)."""
    global _log_fd
    _log_fd = fd


def log(*args):
    msg = 'runner: %s\n' % ' '.join(str(a) for a in args)
    with _log_lock:
        try:
            os.write(_log_fd, msg.encode('utf-8', 'replace'))
        except Exception:
            pass
