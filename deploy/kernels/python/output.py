"""Output records of the kernel runner: the queue that the output thread
sends on port 2001, and the capture of what user code writes (sys.stdout,
sys.stderr and the raw file descriptors 1 and 2) as stdout/stderr records,
flushed as they are written (PROTOCOL.md section 4)."""
import io
import json
import os
import queue
import selectors
import threading
import time

import common
from common import CHUNK, log

BATCH_DELAY = 0.03         # partial output is flushed after this many seconds
MAX_PENDING = 8 * 1024 * 1024  # output bytes queued for sending before writers wait

# --------------------------------------------------------------------------
# output records

out_q = queue.Queue()


class Backlog:
    """Bytes of stdout/stderr queued but not yet sent. Writers of user output
    wait while it is over MAX_PENDING, so a program that prints without end
    is slowed to the pace the agent reads at instead of growing the runner
    until its memory limit kills it. Only writers wait; the output thread
    never does, so it always drains."""

    def __init__(self):
        self.cond = threading.Condition()
        self.bytes = 0

    def wait_for_room(self):
        with self.cond:
            while self.bytes >= MAX_PENDING:
                self.cond.wait(0.5)  # a timeout keeps the wait interruptible (SIGINT)

    def add(self, n):
        with self.cond:
            self.bytes += n

    def sent(self, n):
        with self.cond:
            self.bytes -= n
            if self.bytes < MAX_PENDING:
                self.cond.notify_all()


backlog = Backlog()


def send(rtype, payload=b''):
    if isinstance(payload, str):
        payload = payload.encode('utf-8')
    out_q.put((rtype.encode('ascii'), payload, False))


def send_json(rtype, obj):
    send(rtype, json.dumps(obj))


class Capture:
    """Batches stdout/stderr text into records, keeping their relative order:
    a write to the other stream first flushes the pending one."""

    def __init__(self):
        self.lock = threading.RLock()
        self.kind = None
        self.parts = []
        self.size = 0
        self.since = 0.0

    def write(self, kind, data):
        if not data:
            return
        backlog.wait_for_room()
        with self.lock:
            if self.kind is not None and self.kind != kind:
                self._flush()
            if not self.parts:
                self.since = time.monotonic()
            self.kind = kind
            self.parts.append(data)
            self.size += len(data)
            if self.size >= CHUNK:
                self._flush()

    def flush(self):
        with self.lock:
            self._flush()

    def flush_if_old(self, age):
        with self.lock:
            if self.parts and time.monotonic() - self.since >= age:
                self._flush()

    def _flush(self):
        if self.parts:
            data = b''.join(self.parts)
            backlog.add(len(data))
            for i in range(0, len(data), CHUNK):
                out_q.put((self.kind.encode('ascii'), data[i:i + CHUNK], True))
        self.kind = None
        self.parts = []
        self.size = 0


capture = Capture()


class OutStream(io.TextIOBase):
    """The sys.stdout / sys.stderr of user code."""

    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        self.buffer = _RawOut(kind)

    @property
    def encoding(self):
        return 'utf-8'

    @property
    def errors(self):
        return 'replace'

    @property
    def name(self):
        return '<%s>' % self.kind

    def writable(self):
        return True

    def isatty(self):
        return False

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError('write() argument must be str, not %s' % type(s).__name__)
        capture.write(self.kind, s.encode('utf-8', 'replace'))
        return len(s)

    def flush(self):
        capture.flush()


class _RawOut(io.RawIOBase):
    def __init__(self, kind):
        super().__init__()
        self.kind = kind

    def writable(self):
        return True

    def write(self, b):
        b = bytes(b)
        capture.write(self.kind, b)
        return len(b)

    def flush(self):
        capture.flush()


class FdCapture:
    """Output written to fds 1 and 2 directly (os.system, C extensions) goes
    to pipes read here and becomes stdout/stderr records too."""

    def __init__(self):
        self.lock = threading.Lock()
        self.pipes = {}  # read fd -> kind

    def install(self):
        common.set_log_fd(os.dup(2))
        for fd, kind in ((1, 'stdout'), (2, 'stderr')):
            r, w = os.pipe()
            os.dup2(w, fd)
            os.close(w)
            os.set_blocking(r, False)
            self.pipes[r] = kind

    def drain(self):
        with self.lock:
            for r, kind in self.pipes.items():
                while True:
                    try:
                        data = os.read(r, CHUNK)
                    except BlockingIOError:
                        break
                    except OSError:
                        break
                    if not data:
                        break
                    capture.write(kind, data)

    def run(self):
        sel = selectors.DefaultSelector()
        for r in self.pipes:
            sel.register(r, selectors.EVENT_READ)
        while True:
            try:
                sel.select()
                self.drain()
            except Exception as e:
                log('fd capture failed: %s' % e)
                time.sleep(0.1)


fd_capture = FdCapture()


def output_thread(sock):
    while True:
        try:
            item = out_q.get(timeout=BATCH_DELAY / 2)
        except queue.Empty:
            capture.flush_if_old(BATCH_DELAY)
            continue
        rtype, payload, counted = item
        try:
            sock.send_multipart((rtype, payload), copy=True)
        except Exception as e:
            log('cannot send a %r record: %s' % (rtype, e))
        finally:
            if counted:
                backlog.sent(len(payload))


