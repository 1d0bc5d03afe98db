"""Batch mode of the kernel runner: build and exec commands run with the
image's shell (CA_USER_SHELL, else bash) in /home/work, their stdout and stderr
captured as records (docs/running-code.rst); the `*` defaults. Also the query
mode of a shell kernel (CA_KERNEL_MODE=shell)."""
import os
import selectors
import shlex
import subprocess
import sys

import common
from common import CHUNK, HOME
from output import capture


def run_shell(cmd, state):
    """Runs a command with the image's shell in /home/work, its output captured; returns its exit code."""
    cwd = HOME if os.path.isdir(HOME) else '/'
    try:
        proc = subprocess.Popen([common.USER_SHELL, '-c', cmd], cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True, close_fds=True)
    except Exception as e:
        capture.write('stderr', ('cannot run the command: %s\n' % e).encode('utf-8'))
        return 127
    with state.lock:
        state.proc = proc
    try:
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ, 'stdout')
        sel.register(proc.stderr, selectors.EVENT_READ, 'stderr')
        open_streams = 2
        while open_streams:
            for key, _ in sel.select(timeout=1.0):
                try:
                    data = os.read(key.fd, CHUNK)
                except OSError:
                    data = b''
                if data:
                    capture.write(key.data, data)
                else:
                    sel.unregister(key.fileobj)
                    open_streams -= 1
        sel.close()
        rc = proc.wait()
    finally:
        with state.lock:
            state.proc = None
        for f in (proc.stdout, proc.stderr):
            try:
                f.close()
            except Exception:
                pass
    return 128 - rc if rc < 0 else rc


def default_build(state):
    """Build `*`: `make` with a Makefile, else `python setup.py develop` with a setup.py, else nothing."""
    cwd = HOME if os.path.isdir(HOME) else '/'
    if os.path.isfile(os.path.join(cwd, 'Makefile')):
        return run_shell('make', state)
    if os.path.isfile(os.path.join(cwd, 'setup.py')):
        return run_python('setup.py develop', state)
    return 0


def run_python(args, state):
    """Runs the image's Python (CA_USER_PYTHON, else this runner's own: the image carries it) with `args`."""
    if common.SHELL_KERNEL and not common.USER_PYTHON:
        capture.write('stderr', ('cannot run python %s: this image has no Python (a shell kernel)\n' % args).encode('utf-8'))
        return 127
    return run_shell('%s %s' % (shlex.quote(common.USER_PYTHON or sys.executable), args), state)


def default_exec(state):
    """Exec `*`: `python main.py` (this image's Python), else exit 127."""
    cwd = HOME if os.path.isdir(HOME) else '/'
    if os.path.isfile(os.path.join(cwd, 'main.py')):
        return run_python('main.py', state)
    capture.write('stderr', b'cannot find the main script (main.py)\n')
    return 127
