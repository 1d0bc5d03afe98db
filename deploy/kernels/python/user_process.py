"""User code in the image's own Python: the runner's side of user_repl.py
(docs/running-code.rst, "User code in the image's Python").

With CA_USER_PYTHON set, query-mode code and completions run in a child
process of that interpreter (user_repl.py), which speaks to the runner over
an AF_UNIX SOCK_SEQPACKET socket pair (one message per datagram; its format
is in user_repl.py). Its output does not go that way: the child has the
runner's own fds 1 and 2 (the capture pipes), and its sys.stdout/sys.stderr
write to them unbuffered. The runner keeps every record, tag and kept
run; the child only ever affects the run going on.

The child lives in a session of its own: user code that kills its process
group, calls os._exit or crashes ends the child, never the runner. That run
ends with its output, the status (128 + N for signal N) and a stderr line
saying the state was lost; the next run gets a fresh child."""
import json
import os
import select
import signal
import socket
import subprocess
import threading

import common
from common import HOME, log
from output import capture, fd_capture, send_json

RECV_MAX = 256 * 1024      # a longer message is cut (the child's are short)
MAX_MATCHES = 1000         # completions passed on at most
MAX_EVENTS = 256           # messages of the child held for the executor at most
KILL_AFTER = 3             # the interrupt of one run that kills a child that ignores SIGINT
REPL = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'user_repl.py')

def describe(status):
    """How a child ended (its Popen returncode): the run's exit code, and words for its stderr line."""
    if status < 0:
        sig = -status
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = '?'
        return 128 + sig, 'died: signal %d (%s)' % (sig, name)
    return status, 'exited with status %d' % status


def _closed(sock):
    """Whether the socket's peer is gone (or its reading end shut down), not just an empty message read."""
    p = select.poll()
    p.register(sock, select.POLLIN | select.POLLRDHUP)
    return any(ev & (select.POLLHUP | select.POLLRDHUP | select.POLLNVAL) for _, ev in p.poll(0))


class UserProcess:
    """The child that runs user code (one at a time; a fresh one after a death)."""

    def __init__(self, python, state):
        self.python = python
        self.state = state          # runner.State: its lock and inputs_cv carry our events too
        self.proc = None
        self.sock = None
        self.events = []            # (child, kind, obj) from the children, under state.lock
        self.run_id = 0
        self.pending = {}           # completion id -> the request's tag
        self.next_completion = 0
        self.bad = 0                # malformed messages seen (logged, then ignored)

    # ---------------------------------------------------------------- the child

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self):
        """Starts a fresh child; raises OSError when the interpreter cannot be run."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            cwd = HOME if os.path.isdir(HOME) else '/'
            env = dict(os.environ)
            env.pop('RUNNER', None)
            proc = subprocess.Popen([self.python, '-u', REPL, str(theirs.fileno())], cwd=cwd, env=env,
                                    stdin=subprocess.DEVNULL, pass_fds=(theirs.fileno(),),
                                    start_new_session=True, close_fds=True)
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()
        with self.state.lock:
            self.proc, self.sock = proc, mine
            self.events = []
            self.pending = {}
        threading.Thread(target=self._read, args=(proc, mine), name='user-process', daemon=True).start()
        threading.Thread(target=self._wait, args=(proc, mine), name='user-process-wait', daemon=True).start()
        log('user code runs in %s (pid %d)' % (self.python, proc.pid))

    def _wait(self, proc, sock):
        proc.wait()
        try:
            sock.shutdown(socket.SHUT_RD)  # the reader takes what is queued, then sees the end
        except OSError:
            pass

    def _read(self, proc, sock):
        """Takes the child's messages in order: output to the capture, the rest to the executor."""
        while True:
            try:
                msg = sock.recv(RECV_MAX)
            except OSError:
                msg = b''
            if not msg:
                if _closed(sock):
                    break
                self._malformed(msg)  # an empty message (user code can send one), not the end
                continue
            try:
                self._control(proc, msg)
            except Exception:
                self._malformed(msg)
        if proc.poll() is None:
            # it closed its end of the socket but lives on: it can never finish a run
            log('the user-code process (pid %d) closed its channel; killing it' % proc.pid)
            self._kill(proc)
        proc.wait()
        sock.close()
        self._post(proc, 'dead', proc.returncode)

    def _malformed(self, msg):
        self.bad += 1
        if self.bad <= 3:
            log('ignoring a malformed message from the user-code process (%d bytes)' % len(msg))

    def _control(self, proc, msg):
        try:
            m = json.loads(msg[1:].decode('utf-8')) if msg[:1] == b'j' else None
        except ValueError:
            m = None
        op = m.get('op') if isinstance(m, dict) else None
        if op in ('done', 'input') and isinstance(m.get('id'), int):
            self._post(proc, op, m)
        elif op == 'completion':
            with self.state.lock:
                tag = self.pending.pop(m.get('id'), False)
            matches = m.get('matches')
            if tag is not False and isinstance(matches, list):
                send_json('completion', [s for s in matches if isinstance(s, str)][:MAX_MATCHES], tag)
        elif op == 'ready':
            log('user code interpreter ready: Python %s' % str(m.get('python'))[:40])
        else:
            self._malformed(msg)

    def _post(self, proc, kind, obj):
        with self.state.inputs_cv:
            if len(self.events) >= MAX_EVENTS:
                # a child that floods messages: the oldest go (a death is always kept)
                old = next((i for i, e in enumerate(self.events) if e[1] != 'dead'), None)
                if old is not None:
                    del self.events[old]
            self.events.append((proc, kind, obj))
            self.state.inputs_cv.notify_all()

    def _kill(self, proc):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            try:
                proc.kill()
            except OSError:
                pass

    def _send(self, obj):
        sock = self.sock
        if sock is None:
            raise OSError('no user-code process')
        sock.send(b'j' + json.dumps(obj, separators=(',', ':')).encode('utf-8'))

    # ---------------------------------------------------------------- runs

    def run(self, src, tag, take_input):
        """Runs one query in the child; returns its exit code. `take_input(tag)` is
        the runner's input protocol: the text for the run, or None while none came."""
        with self.state.lock:
            dead = [o for p, k, o in self.events if k == 'dead' and p is self.proc]
        if dead:
            capture.write('stderr', ('[the Python process of user code %s after the last run; its state (variables, '
                                     'imports) was lost: this run starts in a fresh one]\n'
                                     % describe(dead[-1])[1]).encode('utf-8'))
        if not self.alive():
            try:
                self.start()
            except OSError as e:
                capture.write('stderr', ('cannot start the image\'s Python (CA_USER_PYTHON=%s): %s\n'
                                         % (self.python, e)).encode('utf-8'))
                return 127
        self.run_id += 1
        rid = self.run_id
        with self.state.lock:
            # of runs before: a late answer is not this run's (a death of this child is)
            self.events = [e for e in self.events if e[1] == 'dead' and e[0] is self.proc]
        try:
            self._send({'op': 'run', 'id': rid, 'code': src})
        except OSError:
            pass  # the child is going: its end comes as an event
        asked = False  # the child waits for input (request `req`)
        req = None
        while True:
            with self.state.inputs_cv:
                ev = self.events.pop(0) if self.events else None
                if ev is None and not asked:
                    self.state.inputs_cv.wait()
                    continue
            if ev is None:
                text = take_input(tag)
                if text is None:
                    with self.state.inputs_cv:
                        if not self.events:
                            self.state.inputs_cv.wait(0.2)
                    continue
                try:
                    self._send({'op': 'input', 'id': rid, 'req': req, 'text': text})
                except OSError:
                    pass
                asked = False
                continue
            proc, kind, obj = ev
            if proc is not self.proc:
                continue  # of a child that ended before this one started
            fd_capture.drain()  # what the child wrote before this event is the run's, before it
            if kind == 'dead':
                code, how = describe(obj)
                capture.write('stderr', ('[the Python process of user code %s; the kernel\'s state (variables, '
                                         'imports) was lost: the next run starts a fresh one]\n' % how).encode('utf-8'))
                log('the user-code process %s during a run; starting a fresh one' % how)
                try:
                    self.start()
                except OSError as e:
                    log('cannot start %s: %s' % (self.python, e))
                return code
            if obj.get('id') != rid:
                continue  # of a run that ended before (or forged): not this run's
            if kind == 'input':
                asked, req = True, obj.get('req')
                capture.flush()
                take_input(tag, ask={'is_password': bool(obj.get('password'))})
            elif kind == 'done':
                code = obj.get('exitCode')
                return code if isinstance(code, int) and not isinstance(code, bool) else 1

    def interrupt(self, n):
        """SIGINT to the child (KeyboardInterrupt in user code); the KILL_AFTER-th of one run kills it."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            if n >= KILL_AFTER:
                log('user code ignored %d interrupts; killing its process' % (n - 1))
                self._kill(proc)
            else:
                os.kill(proc.pid, signal.SIGINT)
        except OSError as e:
            log('cannot signal the user-code process: %s' % e)

    def complete(self, code, tag):
        """Asks the child for completions; it answers (a `completion` record) from its own thread."""
        with self.state.lock:
            self.next_completion += 1
            cid = self.next_completion
            if len(self.pending) >= 64:
                self.pending.pop(next(iter(self.pending)))
            self.pending[cid] = tag
        try:
            if not self.alive():
                raise OSError('no user-code process')
            self.sock.send(b'j' + json.dumps({'op': 'complete', 'id': cid, 'code': code}).encode('utf-8'),
                           socket.MSG_DONTWAIT)
        except OSError:
            with self.state.lock:
                self.pending.pop(cid, None)
            send_json('completion', [], tag)


def guard_runner():
    """Makes the runner not dumpable: user code of the same uid (its child among them)
    can then neither open the runner's fds under /proc/<pid>/fd (its sockets, its
    pipes) nor ptrace it. Best effort: without ctypes the runner goes on as it was."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(4, 0, 0, 0, 0) != 0:  # PR_SET_DUMPABLE, 0
            log('cannot make the runner undumpable: errno %d' % ctypes.get_errno())
    except Exception as e:
        log('cannot make the runner undumpable: %s' % e)


def from_env(state):
    """The user-code process of this kernel, or None when user code runs in the runner (no CA_USER_PYTHON)."""
    python = common.USER_PYTHON
    if not python:
        return None
    proc = UserProcess(python, state)
    try:
        proc.start()  # at once: the first run and completions need not wait for it
    except OSError as e:
        log('cannot start %s now (%s); each run tries again' % (python, e))
    return proc
