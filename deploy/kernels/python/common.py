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
