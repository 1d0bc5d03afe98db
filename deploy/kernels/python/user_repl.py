"""The REPL of user code in the image's own Python (docs/running-code.rst,
"User code in the image's Python").

The kernel runner starts it as `<image python> -u user_repl.py <fd>` when
CA_USER_PYTHON names the image's interpreter: user code then runs here, with
the image's interpreter and packages, while the runner (in its own Python)
does all the ZeroMQ and msgpack work. It must run on any CPython 3.6+ with
nothing but the standard library.

<fd> is one end of an AF_UNIX SOCK_SEQPACKET socket pair: every message is
one datagram, so a write can never be split or run into another one: b'j'
and a JSON object with 'op':
    runner -> here: run {id, code}, input {id, req, text}, complete {id, code}
    here -> runner: ready {pid, python}, input {id, req, password},
                    done {id, exitCode}, completion {id, matches}
Output does not go through it: fds 1 and 2 are the runner's own capture pipes,
and sys.stdout / sys.stderr write to them at once, unbuffered, so that print,
os.write and subprocesses keep their order in each stream and what was
written before a death is in the pipe when the runner ends the run. The
socket is not inherited by subprocesses (close on exec). User code can still write to it, being in this process: the runner
takes only well-formed messages of the run going on, and the worst a forged
one does is end or feed that very run.
"""
import builtins
import getpass
import json
import os
import queue
import signal
import stat
import sys
import threading
import traceback
import io

# The runner's completion, imported while this file's folder is still on sys.path and then
# forgotten by name, so that a user's own module `completions` is theirs to import.
from completions import names as complete_names
del sys.modules['completions']

ctl = -1             # the socket to the runner
namespace = {'__name__': '__main__', '__builtins__': builtins}
jobs = queue.Queue()
answers = queue.Queue()  # input answers: {id, req, text}
in_code = False
run_id = None
held = {}            # 1 or 2 -> (a private dup of the runner's pipe, its (st_dev, st_ino))


def send_raw(data):
    """Sends one message (whole or not at all: SOCK_SEQPACKET)."""
    os.write(ctl, data)


def send_json(obj):
    send_raw(b'j' + json.dumps(obj, separators=(',', ':')).encode('utf-8'))


def write_out(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class OutStream(io.TextIOBase):
    """sys.stdout / sys.stderr of user code: each write goes to fd 1 or 2 at once."""

    def __init__(self, fd):
        super().__init__()
        self.fd = fd
        self.buffer = RawOut(fd)

    @property
    def encoding(self):
        return 'utf-8'

    @property
    def errors(self):
        return 'replace'

    @property
    def name(self):
        return '<stdout>' if self.fd == 1 else '<stderr>'

    def writable(self):
        return True

    def isatty(self):
        return False

    def fileno(self):
        return self.fd

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError('write() argument must be str, not %s' % type(s).__name__)
        write_out(self.fd, s.encode('utf-8', 'replace'))
        return len(s)

    def flush(self):
        pass


class RawOut(io.RawIOBase):
    def __init__(self, fd):
        super().__init__()
        self.fd = fd

    def writable(self):
        return True

    def write(self, b):
        b = bytes(b)
        write_out(self.fd, b)
        return len(b)


# --------------------------------------------------------------------------
# input

_req = [0]


def request_input(prompt, is_password):
    if prompt:
        sys.stdout.write(str(prompt))
    _req[0] += 1
    req = _req[0]
    send_json({'op': 'input', 'id': run_id, 'req': req, 'password': bool(is_password)})
    while True:
        a = answers.get()  # interruptible: SIGINT raises KeyboardInterrupt here
        if a.get('id') == run_id and a.get('req') == req:
            return str(a.get('text', ''))
        # an answer to a request an interrupt abandoned: dropped


def user_input(prompt=''):
    return request_input(prompt, False)


def user_getpass(prompt='Password: ', stream=None):
    return request_input(prompt, True)


class InStream(io.TextIOBase):
    """sys.stdin of user code: each readline() asks the agent for a line."""

    @property
    def encoding(self):
        return 'utf-8'

    def readable(self):
        return True

    def isatty(self):
        return False

    def readline(self, size=-1):
        return request_input('', False) + '\n'

    def read(self, size=-1):
        return self.readline()


# --------------------------------------------------------------------------
# running code

def sigint_handler(signum, frame):
    if in_code:
        raise KeyboardInterrupt
    # between runs (or while this REPL talks to the runner): nothing to interrupt


def hold_fds():
    """Keeps a private copy of fds 1 and 2 (the runner's pipes), to put back what user code closes."""
    for fd in (1, 2):
        try:
            st = os.fstat(fd)
            # above the low fds user code uses, closed on exec
            import fcntl
            dup = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100)
            held[fd] = (dup, (st.st_dev, st.st_ino))
        except (OSError, ImportError):
            pass


def restore_io():
    """Puts back what user code may have replaced or closed since the last run."""
    global in_code
    in_code = False
    for fd, (dup, want) in held.items():
        try:
            st = os.fstat(fd)
            ok = (st.st_dev, st.st_ino) == want
        except OSError:
            ok = False
        if not ok:
            try:
                os.dup2(dup, fd)
            except OSError:
                pass
    if not isinstance(sys.stdout, OutStream) or sys.stdout.fd != 1:
        sys.stdout = OutStream(1)
    if not isinstance(sys.stderr, OutStream) or sys.stderr.fd != 2:
        sys.stderr = OutStream(2)
    if not isinstance(sys.stdin, InStream):
        sys.stdin = InStream()
    builtins.input = user_input
    getpass.getpass = user_getpass
    if signal.getsignal(signal.SIGINT) is not sigint_handler:
        signal.signal(signal.SIGINT, sigint_handler)


def print_exception(exc):
    te = traceback.TracebackException(type(exc), exc, exc.__traceback__)
    # without this REPL's own frames: the exec() call, the SIGINT handler
    te.stack = traceback.StackSummary.from_list([f for f in te.stack if f.filename != __file__])
    sys.stderr.write(''.join(te.format()))


def run_code(src):
    global in_code
    exit_code = 0
    try:
        code = compile(src, '<input>', 'exec')
        try:
            in_code = True
            exec(code, namespace)
        finally:
            in_code = False
    except SystemExit as e:
        if e.code is None:
            exit_code = 0
        elif isinstance(e.code, int):
            exit_code = e.code
        else:
            sys.stderr.write('%s\n' % (e.code,))
            exit_code = 1
    except BaseException as e:  # includes KeyboardInterrupt
        if isinstance(e, SyntaxError):
            sys.stderr.write(''.join(traceback.format_exception_only(type(e), e)))
        else:
            print_exception(e)
        exit_code = 1
    finally:
        in_code = False
    return exit_code




# --------------------------------------------------------------------------
# the channel to the runner

def reader():
    """Takes the runner's messages: runs go to the main thread, completions are answered here."""
    try:
        # The runner's SIGINT is for user code in the main thread: one this thread took would
        # wake no blocking call there (time.sleep would sleep on).
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    except (AttributeError, OSError, ValueError):
        pass
    while True:
        try:
            msg = os.read(ctl, 1024 * 1024)
        except OSError:
            os._exit(1)  # user code closed the socket: no run can end any more
        if not msg:
            os._exit(0)  # the runner is gone: nothing can reach us
        try:
            m = json.loads(msg[1:].decode('utf-8')) if msg[:1] == b'j' else None
        except ValueError:
            m = None
        if not isinstance(m, dict):
            continue
        op = m.get('op')
        if op == 'run':
            jobs.put(m)
        elif op == 'input':
            answers.put(m)
        elif op == 'complete':
            try:
                matches = complete_names(namespace, str(m.get('code', '')))
            except Exception:
                matches = []
            try:
                send_json({'op': 'completion', 'id': m.get('id'), 'matches': matches})
            except OSError:
                pass


def main():
    global ctl, run_id
    ctl = int(sys.argv[1])
    os.set_inheritable(ctl, False)  # user code's subprocesses never get it
    if not stat.S_ISSOCK(os.fstat(ctl).st_mode):
        sys.stderr.write('user_repl: fd %d is not the runner\'s socket\n' % ctl)
        sys.exit(2)
    hold_fds()
    sys.argv = ['']
    sys.path[0] = ''  # as an interactive interpreter: the working directory, not this file's
    restore_io()
    threading.Thread(target=reader, name='runner-channel', daemon=True).start()
    send_json({'op': 'ready', 'pid': os.getpid(), 'python': sys.version.split()[0]})
    while True:
        try:
            job = jobs.get()
        except KeyboardInterrupt:
            continue  # an interrupt between runs
        run_id = job.get('id')
        exit_code = 1
        try:
            restore_io()
            exit_code = run_code(str(job.get('code', '')))
        except BaseException:  # an interrupt that came right after the code
            pass
        finally:
            sent = False
            while not sent:
                try:
                    send_json({'op': 'done', 'id': run_id, 'exitCode': exit_code})
                    sent = True
                except KeyboardInterrupt:
                    continue
                except OSError:
                    os._exit(1)  # user code closed or replaced the socket: the runner ends the run
            run_id = None


if __name__ == '__main__':
    main()
