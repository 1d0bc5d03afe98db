#!/usr/bin/env python3
"""Kernel runner of the lablup/kernel-python image (docs/wire-contract.rst, "Kernel runner ports").

Sockets (all bound in the container; the agent connects):
  2000 PULL  input records  [type, payload]
  2001 PUSH  output records [type, payload]
  2002 SUB   raw terminal input bytes (one frame)
  2003 PUB   raw terminal output bytes (one frame)

Threads:
  main      the executor: runs queued code/build/exec jobs in order. User code
            runs here so that an interrupt (SIGINT to this thread) raises
            KeyboardInterrupt even in time.sleep() or `while True: pass`.
  input     owns the PULL socket; queues jobs, answers status/complete,
            delivers input and interrupts (inputs.py).
  output    owns the PUSH socket; sends queued records, flushes batched
            stdout/stderr.
  terminal  owns SUB/PUB and the pty of a bash shell, restarted on exit.

With CA_USER_PYTHON, query-mode code runs in a child process of the image's
Python instead (user_process.py, two threads per child); with
CA_KERNEL_MODE=shell, in the image's shell (batch.py).

Beyond section 4 (the agent's run integrity): the runner says `hello` at
start and when asked (its generation, pid, how the runner before it ended,
the job it runs, the queue and the last jobs it finished), sends `started`
when a job begins, and, once the agent tags its inputs (a third frame), tags
every record with its generation and the tag of the job or request it
belongs to (output.Tagging). An agent that asks for it gets its runs' output
numbered and kept until it acknowledges it (output.Keep). Before each job it puts back what user code may
have taken from it: fds 1 and 2, sys.stdout/stderr/stdin, input() and the
SIGINT handler.

Only the standard library, pyzmq and msgpack.
"""

import builtins
import collections
import getpass
import io
import os
import signal
import sys
import threading
import time
import traceback

import zmq

import batch
import claim
import cluster_ssh
import common
import user_process
from common import HOME, log
from inputs import Inputs
from output import OutStream, capture, fd_capture, keep, note_job, output_thread, send, send_json, tagging, wait_sent
from terminal import Terminal, terminal_thread


# --------------------------------------------------------------------------
# state shared between the threads

class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.jobs = collections.deque()   # (type, text, tag, run id)
        self.job = None                   # {'t', 'run'} of the job running now
        self.recent = collections.deque(maxlen=32)  # {'t', 'run', 'exitCode'} of the last jobs finished
        self.jobs_cv = threading.Condition(self.lock)
        self.busy = False
        self.failed_build = None          # {'t': tag} of the last build that failed: the exec after it is skipped
        self.current = None          # ('code'|'build'|'exec', proc or None)
        self.in_code = False         # user code is running in the main thread
        self.proc = None             # running build/exec subprocess
        self.interrupts = 0
        self.sigint_sent = None      # the job an in-process SIGINT was sent to, until its handler runs
        self.inputs = []             # (tag, text) of input not asked for yet: kept until its run asks
        self.inputs_cv = threading.Condition(self.lock)
        self.namespace = {'__name__': '__main__', '__builtins__': builtins}


state = State()
MAIN_THREAD = threading.main_thread().ident


def next_job(timeout=None):
    with state.jobs_cv:
        if timeout is None:
            while not state.jobs:
                state.jobs_cv.wait()
        elif not state.jobs:
            state.jobs_cv.wait(timeout)
            if not state.jobs:
                return None
        return state.jobs.popleft()


# --------------------------------------------------------------------------
# user input inside code

def _request_input(prompt, is_password):
    if prompt:
        sys.stdout.write(str(prompt))
    capture.flush()
    tag = tagging.job_tag
    take_input(tag, {'is_password': bool(is_password)})
    while True:
        text = take_input(tag)
        if text is not None:
            return text
        with state.inputs_cv:
            state.inputs_cv.wait(0.2)  # a timeout keeps the wait interruptible (SIGINT)


def take_input(tag, ask=None):
    """The input of the run `tag`, its line end stripped, or None while none came.
    With `ask` (a run asks), sends `waiting-input` unless input sent before the run
    asked (early input, kept until asked for) is there, and takes nothing."""
    with state.inputs_cv:
        mine = [i for i, (t, _) in enumerate(state.inputs) if t is None or t == tag]
        if ask is None and mine:
            text = state.inputs.pop(mine[0])[1]
            return text[:-2] if text.endswith('\r\n') else text[:-1] if text.endswith('\n') else text
    if ask is not None and not mine:
        send_json('waiting-input', ask, tag)
    return None


def user_input(prompt=''):
    return _request_input(prompt, False)


def user_getpass(prompt='Password: ', stream=None):
    return _request_input(prompt, True)


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
        return _request_input('', False) + '\n'

    def read(self, size=-1):
        return self.readline()


# --------------------------------------------------------------------------
# query mode

def sigint_handler(signum, frame):
    state.sigint_sent = None
    if state.in_code:
        raise KeyboardInterrupt
    log('SIGINT outside user code ignored')


def print_exception(exc):
    tb = exc.__traceback__
    # drop the runner's own frames (exec() call)
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    text = ''.join(traceback.format_exception(type(exc), exc, tb))
    sys.stderr.write(text)


def run_magic(src):
    parts = src.strip().split()
    cmd = parts[0]
    if cmd == '%ping':
        sys.stdout.write('pong!\n')
        return 0
    if cmd in ('%environ', '%shells-wait'):
        rest = src.strip()[len(cmd):]
        return claim.take_environ(rest, user_code, terminal) if cmd == '%environ' else claim.wait_shell(rest, terminal)
    if cmd == '%resize':
        try:
            rows, cols = int(parts[1]), int(parts[2])
        except (IndexError, ValueError):
            sys.stderr.write('usage: %resize <rows> <cols>\n')
            return 1
        terminal.resize(rows, cols)
        return 0
    sys.stderr.write('unknown command: %s\n' % cmd)
    return 1


def run_code(src):
    if src.lstrip().startswith('%'):
        return run_magic(src)
    if common.SHELL_KERNEL:
        return batch.run_shell(src, state)
    if user_code is not None:
        return user_code.run(src, tagging.job_tag, take_input)
    exit_code = 0
    try:
        code = compile(src, '<input>', 'exec')
        try:
            state.in_code = True
            exec(code, state.namespace)
        finally:
            state.in_code = False
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
        state.in_code = False
    return exit_code


# --------------------------------------------------------------------------
# the executor (main thread)

def finish(rtype, exit_code, tag=None):
    fd_capture.drain()
    capture.flush()
    send_json(rtype, {'exitCode': exit_code}, tag)
    if rtype == 'finished':
        with state.lock:
            state.recent.append({'t': tag, 'run': state.job['run'] if state.job else None, 'exitCode': exit_code})


REAL_EXIT = os._exit
EXIT_GRACE = 0.05  # seconds for the socket's I/O thread to put the last records on the wire


def user_exit(status=0):
    """os._exit of user code: what the run wrote, to fds 1 and 2 or sys.stdout/stderr,
    flushed or not, reaches the agent before the runner goes, so before the run's end."""
    try:
        fd_capture.drain()
        capture.flush()
        wait_sent(2.0)
        time.sleep(EXIT_GRACE)
    except BaseException:
        pass
    REAL_EXIT(status)


def restore_io():
    """Puts back what user code may have replaced or closed since the last job."""
    fd_capture.restore()
    if not isinstance(sys.stdout, OutStream) or sys.stdout.kind != 'stdout':
        sys.stdout = OutStream('stdout')
    if not isinstance(sys.stderr, OutStream) or sys.stderr.kind != 'stderr':
        sys.stderr = OutStream('stderr')
    if not isinstance(sys.stdin, InStream):
        sys.stdin = InStream()
    builtins.input = user_input
    getpass.getpass = user_getpass
    os._exit = user_exit
    if signal.getsignal(signal.SIGINT) is not sigint_handler:
        signal.signal(signal.SIGINT, sigint_handler)


def run_job(job):
    """Runs one job and answers it with exactly one `finished` (code, exec) or `build-finished` (build).

    Batch commands come verbatim: `*` is the default above, the empty one is
    skipped (exit 0), and the exec after a failed build of the same run is
    skipped with exit 127."""
    jtype, text, tag, _run = job
    if jtype == 'code':
        try:
            finish('finished', run_code(text), tag)
        finally:
            drop_inputs(tag)
    elif jtype == 'build':
        rc = batch.default_build(state) if text == '*' else batch.run_shell(text, state) if text else 0
        with state.lock:
            state.failed_build = {'t': tag} if rc != 0 else None
        finish('build-finished', rc, tag)
    elif jtype == 'exec':
        with state.lock:
            failed, state.failed_build = state.failed_build, None
        if failed is not None and failed['t'] == tag:
            rc = 127
        else:
            rc = batch.default_exec(state) if text == '*' else batch.run_shell(text, state) if text else 0
        finish('finished', rc, tag)


def drop_inputs(tag):
    """A run has ended: input it never asked for goes with it."""
    with state.inputs_cv:
        state.inputs = [i for i in state.inputs if i[0] != tag]


def executor():
    while True:
        job = next_job()
        tag = job[2]
        try:
            restore_io()
        except Exception:
            log('could not restore the I/O of user code: %s' % traceback.format_exc())
        with state.lock:
            state.busy = True
            state.current = job[0]
            state.job = {'t': tag, 'run': job[3]}
            state.interrupts = 0
        capture.flush()  # what was written before this job is not this job's
        keep.open(tag, job[3])
        tagging.job_tag = tag
        note_job(tag)
        if tag is not None:
            send('started', b'', tag)
        try:
            run_job(job)
        except KeyboardInterrupt:
            log('stray interrupt in the executor')
            try:
                finish('finished', 1, tag)
            except BaseException:
                pass
        except BaseException as e:
            log('job %s failed: %s' % (job[0], traceback.format_exc()))
            try:
                finish('finished', 1, tag)
            except BaseException:
                pass
        finally:
            state.in_code = False
            tagging.job_tag = None
            note_job(None)
            with state.lock:
                state.busy = False
                state.current = None
                state.job = None


terminal = None
user_code = None  # user_process.UserProcess where the image's Python runs user code


# --------------------------------------------------------------------------

def main():
    global terminal, user_code
    try:
        # A group of its own: user code that signals its group (os.killpg(0, 9)) ends the
        # runner and its children, not the entrypoint that restarts it.
        os.setpgrp()
    except OSError:
        pass
    try:
        os.chdir(HOME)
    except OSError:
        pass
    cluster_ssh.start()  # a session's kernel: its sshd listens before the runner says it is ready
    if common.USER_PYTHON or common.SHELL_KERNEL:
        user_process.guard_runner()  # user code runs in children only: keep them out of the runner
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    push = ctx.socket(zmq.PUSH)
    sub = ctx.socket(zmq.SUB)
    pub = ctx.socket(zmq.PUB)
    for s in (pull, push, sub, pub):
        s.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b'')
    pull.bind('tcp://*:2000')
    push.bind('tcp://*:2001')
    sub.bind('tcp://*:2002')
    pub.bind('tcp://*:2003')

    terminal = Terminal(ctx)
    try:
        fd_capture.install()
        fd_capture.leftover()
        threading.Thread(target=fd_capture.run, name='fd-capture', daemon=True).start()
    except Exception as e:
        log('cannot capture fds 1 and 2: %s' % e)

    sys.stdout = OutStream('stdout')
    sys.stderr = OutStream('stderr')
    sys.stdin = InStream()
    builtins.input = user_input
    getpass.getpass = user_getpass
    signal.signal(signal.SIGINT, sigint_handler)
    if not common.SHELL_KERNEL:
        user_code = user_process.from_env(state)

    inputs = Inputs(state, user_code, MAIN_THREAD)
    for target, args, name in ((output_thread, (push,), 'output'), (inputs.run, (pull,), 'input'),
                               (terminal_thread, (terminal, sub, pub), 'terminal')):
        threading.Thread(target=target, args=args, name=name, daemon=True).start()
    if common.PREVIOUS_STATUS is not None:
        log('the runner before this one ended with status %d; its state is lost' % common.PREVIOUS_STATUS)
    send_json('hello', inputs.hello())
    log('ready (uid %d, pid %d, generation %s)' % (os.getuid(), os.getpid(), common.GENERATION))
    while True:
        try:
            executor()
        except BaseException:
            log('executor failed: %s' % traceback.format_exc())
            time.sleep(0.1)


if __name__ == '__main__':
    main()
