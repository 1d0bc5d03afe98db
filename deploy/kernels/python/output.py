"""Output records of the kernel runner: the queue that the output thread
sends on port 2001, and the capture of what user code writes (sys.stdout,
sys.stderr and the raw file descriptors 1 and 2) as stdout/stderr records,
flushed as they are written (docs/wire-contract.rst, "Kernel runner ports")."""
import fcntl
import io
import json
import os
import queue
import select
import stat
import threading
import time

import common
from common import CHUNK, log
from keep import Keep

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


class Tagging:
    """What the runner attaches to its records (a beyond-section-4 extension).

    An agent that speaks it sends inputs with a third frame, JSON
    `{"t": tag, "run": run id}`; from the first such input on, every record
    the runner sends carries a third frame too, JSON `{"g": generation}` plus
    `"t"`: the tag of the job the record belongs to (for output: the job
    running when it was written), or `"late": true` for output written while
    no job runs (a thread that outlived its run). An agent that never tags
    gets the two-frame records of section 4."""

    def __init__(self):
        self.enabled = False
        self.job_tag = None   # the tag of the job running now, None between jobs

    def meta(self, tag=None, late=False, seq=None, lost=False):
        if not self.enabled:
            return None
        m = {'g': common.GENERATION}
        if tag is not None:
            m['t'] = tag
        elif late:
            m['late'] = True
        if seq is not None:
            m['s'] = seq
        if lost:
            m['lost'] = True
        return json.dumps(m, separators=(',', ':')).encode('ascii')


tagging = Tagging()


keep = Keep(out_q, tagging)


def send(rtype, payload=b'', tag=None):
    """Queues a record; `tag` is the tag of the input it answers (a job's or a request's)."""
    if isinstance(payload, str):
        payload = payload.encode('utf-8')
    keep.put(rtype, payload, tag, False)


def send_json(rtype, obj, tag=None):
    send(rtype, json.dumps(obj), tag)


class Capture:
    """Batches stdout/stderr text into records, keeping their relative order:
    a write to the other stream, or one made for another job, first flushes
    the pending one. Output is tagged with the job running when it is written."""

    def __init__(self):
        self.lock = threading.RLock()
        self.kind = None
        self.tag = None
        self.parts = []
        self.size = 0
        self.since = 0.0

    def write(self, kind, data):
        if not data:
            return
        backlog.wait_for_room()
        with self.lock:
            tag = tagging.job_tag
            if self.kind is not None and (self.kind != kind or self.tag != tag):
                self._flush()
            if not self.parts:
                self.since = time.monotonic()
            self.kind = kind
            self.tag = tag
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
                keep.put(self.kind, data[i:i + CHUNK], self.tag, True, late=self.tag is None)
        self.kind = None
        self.tag = None
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
    to pipes read here and becomes stdout/stderr records too.

    User code may close or replace fds 1 and 2: `restore()`, called before
    every job, puts a fresh pipe back on a descriptor that no longer is ours.
    A pipe whose every writer is gone reads as end-of-file and is dropped
    (reading it again would return at once, for ever: a spinning thread)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.pipes = {}    # read fd -> kind
        self.writers = {}  # 1 or 2 -> (st_dev, st_ino) of the pipe it should hold
        self.held = {}     # 1 or 2 -> the entrypoint's FIFO for it (see install)

    def install(self):
        """Puts fds 1 and 2 on pipes read here: the entrypoint's FIFOs where it
        holds them (RUNNER_OUT_FDS), which outlive this runner, so that what
        was written to them before a runner died is read by the next one
        (`leftover`), else pipes of its own."""
        common.set_log_fd(os.dup(2))
        held = _held_fifos(os.environ.pop('RUNNER_OUT_FDS', ''))
        for fd, kind in ((1, 'stdout'), (2, 'stderr')):
            if held:
                self.held[fd] = held[fd - 1]
                os.set_inheritable(self.held[fd], False)  # children get fds 1 and 2, not these
                self.pipes[self.held[fd]] = kind
            self._attach(fd, kind)

    def leftover(self):
        """Sends what the runner before this one left in the FIFOs, with its
        generation and the tag of the job it ran (RUNNER_JOB_FILE), before this
        runner says hello: the agent gives it to that run before its end."""
        job = {}
        try:
            with open(RUNNER_JOB_FILE) as f:
                job = json.load(f)
            os.unlink(RUNNER_JOB_FILE)
        except (OSError, ValueError):
            pass
        if not isinstance(job, dict) or not isinstance(job.get('g'), str):
            return
        m = {'g': job['g']}
        if isinstance(job.get('t'), str):
            m['t'] = job['t']
        else:
            m['late'] = True
        meta = json.dumps(m, separators=(',', ':')).encode('ascii')
        for fd, kind in ((1, 'stdout'), (2, 'stderr')):
            r = self.held.get(fd)
            while r is not None and select.select([r], [], [], 0)[0]:
                data = os.read(r, CHUNK)
                if not data:
                    break
                out_q.put((kind.encode('ascii'), data, False, meta))

    def _attach(self, fd, kind):
        if fd in self.held:
            os.dup2(self.held[fd], fd)  # inheritable: subprocesses write to it too
            st = os.fstat(fd)
            with self.lock:
                self.writers[fd] = (st.st_dev, st.st_ino)
            return
        r, w = os.pipe()
        # With fds 1 and 2 closed, the pipe itself gets them: move both ends above 2 first.
        low = [x for x in (r, w) if x <= 2]
        r, w = (fcntl.fcntl(x, fcntl.F_DUPFD_CLOEXEC, 3) if x <= 2 else x for x in (r, w))
        for x in low:
            os.close(x)
        os.set_inheritable(w, False)
        os.dup2(w, fd)  # fd 1 or 2 itself stays inheritable, for subprocesses
        os.close(w)
        os.set_blocking(r, False)
        st = os.fstat(fd)
        with self.lock:
            self.pipes[r] = kind
            self.writers[fd] = (st.st_dev, st.st_ino)

    def restore(self):
        """Re-attaches fd 1 or 2 when user code closed it or put something else there."""
        for fd, kind in ((1, 'stdout'), (2, 'stderr')):
            want = self.writers.get(fd)
            if want is None:
                continue
            try:
                st = os.fstat(fd)
                ok = (st.st_dev, st.st_ino) == want
            except OSError:
                ok = False
            if not ok:
                log('fd %d was closed or replaced by user code; restoring it' % fd)
                self._attach(fd, kind)

    def drain(self):
        with self.lock:
            for r, kind in list(self.pipes.items()):
                held = r in self.held.values()  # blocking (its flags are fd 1's): read only what is there
                while not held or select.select([r], [], [], 0)[0]:
                    try:
                        data = os.read(r, CHUNK)
                    except BlockingIOError:
                        break
                    except OSError:
                        data = b''
                    if not data:
                        # every writer closed it: nothing will come again
                        del self.pipes[r]
                        os.close(r)
                        break
                    capture.write(kind, data)

    def run(self):
        while True:
            try:
                with self.lock:
                    fds = list(self.pipes)
                # a timeout: pipes attached meanwhile are picked up
                ready, _, _ = select.select(fds, [], [], 0.5)
                if ready:
                    self.drain()
            except Exception as e:
                log('fd capture failed: %s' % e)
                time.sleep(0.1)


RUNNER_JOB_FILE = '/tmp/.runner-out/job'  # {g, t} of the job running: whose output a runner death leaves


def _held_fifos(raw):
    """The entrypoint's FIFO fds (`7,8`) when both are open FIFOs, else None."""
    try:
        fds = [int(x) for x in raw.split(',')]
        if len(fds) == 2 and all(stat.S_ISFIFO(os.fstat(x).st_mode) for x in fds):
            return fds
    except (ValueError, OSError):
        pass
    return None


def note_job(tag):
    """Writes (or, with None, removes) the job file of a job that starts (ends)."""
    try:
        if tag is None:
            os.unlink(RUNNER_JOB_FILE)
        else:
            with open(RUNNER_JOB_FILE, 'w') as f:
                json.dump({'g': common.GENERATION, 't': tag}, f)
    except OSError:
        pass  # no job file: output a runner death leaves goes to no run


fd_capture = FdCapture()


def output_thread(sock):
    while True:
        try:
            item = out_q.get(timeout=BATCH_DELAY / 2)
        except queue.Empty:
            capture.flush_if_old(BATCH_DELAY)
            continue
        rtype, payload, counted, meta = item
        try:
            sock.send_multipart((rtype, payload) if meta is None else (rtype, payload, meta), copy=True)
        except Exception as e:
            log('cannot send a %r record: %s' % (rtype, e))
        finally:
            if counted:
                backlog.sent(len(payload))
            out_q.task_done()


def wait_sent(timeout):
    """Waits (at most `timeout` seconds) until every record queued so far was handed to the socket."""
    deadline = time.monotonic() + timeout
    while out_q.unfinished_tasks and time.monotonic() < deadline:
        time.sleep(0.005)


