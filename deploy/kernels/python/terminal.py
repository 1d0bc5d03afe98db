"""The kernel's terminal: the image's shell (common.USER_SHELL: bash of this
image, else CA_USER_SHELL or /bin/sh) on a pty, its output published on port
2003 and input from port 2002 written to it; restarted when the shell exits
(docs/wire-contract.rst, "Kernel runner ports")."""
import errno
import fcntl
import os
import shutil
import signal
import struct
import subprocess
import termios
import threading
import time
import traceback

import zmq

import common
from common import CHUNK, HOME, log

# --------------------------------------------------------------------------
# the terminal

class Terminal:
    def __init__(self, ctx):
        self.ctx = ctx
        self.lock = threading.Lock()
        self.master = None
        self.proc = None
        self.size = (24, 80)

    def _setsize(self, fd):
        rows, cols = self.size
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack('HHHH', rows, cols, 0, 0))

    def spawn(self):
        master, slave = os.openpty()
        try:
            self._setsize(slave)
        except OSError:
            pass
        env = dict(os.environ)
        env.setdefault('TERM', 'xterm-256color')
        env['TERM'] = env.get('TERM') or 'xterm-256color'
        env.pop('RUNNER', None)
        cwd = HOME if os.path.isdir(HOME) else '/'
        # setsid --ctty: a new session with the pty as controlling terminal. Where user code
        # runs with the image's own programs (CA_USER_PYTHON, a shell kernel), the image's
        # setsid may be another make (busybox's has no --ctty) or missing: the child then
        # does the same itself (a new session, TIOCSCTTY on the pty).
        if not (common.USER_PYTHON or common.SHELL_KERNEL) and shutil.which('setsid'):
            proc = subprocess.Popen(['setsid', '--ctty', common.USER_SHELL, '-i'], stdin=slave, stdout=slave,
                                    stderr=slave, cwd=cwd, env=env, close_fds=True)
        else:
            proc = subprocess.Popen([common.USER_SHELL, '-i'], stdin=slave, stdout=slave, stderr=slave, cwd=cwd,
                                    env=env, close_fds=True, start_new_session=True, preexec_fn=_take_tty)
        os.close(slave)
        os.set_blocking(master, False)
        with self.lock:
            self.master, self.proc = master, proc

    def resize(self, rows, cols):
        with self.lock:
            self.size = (rows, cols)
            master, proc = self.master, self.proc
            if master is None:
                return
            try:
                self._setsize(master)
            except OSError as e:
                log('resize failed: %s' % e)
            if proc is not None and proc.poll() is None:
                try:
                    os.kill(proc.pid, signal.SIGWINCH)
                except OSError:
                    pass

    def write(self, data):
        with self.lock:
            master = self.master
        if master is None:
            return
        view = memoryview(data)
        deadline = time.monotonic() + 2
        while view:
            try:
                n = os.write(master, view)
                view = view[n:]
            except BlockingIOError:
                if time.monotonic() > deadline:
                    log('terminal input dropped (pty full)')
                    return
                time.sleep(0.01)
            except OSError:
                return

    def _close(self):
        with self.lock:
            master, proc = self.master, self.proc
            self.master, self.proc = None, None
        if master is not None:
            try:
                os.close(master)
            except OSError:
                pass
        if proc is not None:
            try:
                proc.kill()
            except OSError:
                pass
            try:
                proc.wait(timeout=1)
            except Exception:
                pass

    def run(self, sub, pub):
        poller = zmq.Poller()
        poller.register(sub, zmq.POLLIN)
        while True:
            try:
                self.spawn()
            except Exception as e:
                log('cannot start the terminal shell: %s' % e)
                time.sleep(2)
                continue
            master = self.master
            poller.register(master, zmq.POLLIN)
            ended = False
            while not ended:
                try:
                    events = dict(poller.poll(500))
                except zmq.ZMQError as e:
                    if e.errno == errno.EINTR:
                        continue
                    raise
                if sub in events:
                    while True:
                        try:
                            data = sub.recv(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self.write(data)
                if master in events:
                    while True:
                        try:
                            data = os.read(master, CHUNK)
                        except BlockingIOError:
                            break
                        except OSError:  # EIO: every slave fd is closed
                            data = b''
                        if not data:
                            ended = True
                            break
                        pub.send(data)
                if not ended and self.proc is not None and self.proc.poll() is not None:
                    # the shell is gone; a background job may still hold the pty
                    try:
                        while True:
                            data = os.read(master, CHUNK)
                            if not data:
                                break
                            pub.send(data)
                    except OSError:
                        pass
                    ended = True
            poller.unregister(master)
            self._close()
            pub.send(b'Restarting...\r\n')
            log('terminal shell ended; restarting')
            time.sleep(0.2)


def _take_tty():
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # in the child, after setsid(): the pty on fd 0 becomes its terminal


def terminal_thread(terminal, sub, pub):
    while True:
        try:
            terminal.run(sub, pub)
        except Exception:
            log('terminal failed: %s' % traceback.format_exc())
            terminal._close()
            time.sleep(1)


