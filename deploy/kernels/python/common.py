"""Shared by the kernel runner's modules: the home directory, the record size and the log."""
import os
import threading

HOME = '/home/work'
CHUNK = 64 * 1024          # max bytes of one stdout/stderr/terminal record

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
