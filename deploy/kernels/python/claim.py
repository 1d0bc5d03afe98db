"""The runner's side of a warm-pool claim (docs/kernels.rst, "Warm pools"):
a pooled container's runner started before it had a kernel, so the agent
gives it the kernel's environment afterwards, as two commands it sends as
query code:

  %environ {"NAME": "value", ...}   the runner's os.environ takes them; the
                                    user-code child (CA_USER_PYTHON) is started
                                    afresh so that it inherits them (a pooled
                                    kernel ran nothing yet: no state is lost);
                                    the terminal's shell is hung up (the
                                    terminal starts its successor with them).
                                    Prints the pids of the shells hung up, as
                                    a JSON list.
  %shells-wait [pid, ...]           waits (3 s at most) until the terminal has
                                    a shell other than those.

They run in the runner itself, whichever process runs user code (a Python
statement would change only the child's environment where user code runs
in the image's own Python, or in its shell). A user may send them too: they
change only this kernel's own processes."""
import json
import os
import sys
import time

from common import log

MAX_BYTES = 1 << 20  # the agent's environ is bounded far below this


def _parse(text, want):
    if len(text) > MAX_BYTES:
        raise ValueError('longer than %d bytes' % MAX_BYTES)
    value = json.loads(text)
    if not isinstance(value, want):
        raise ValueError('not a JSON %s' % want.__name__)
    return value


def take_environ(text, user_code, terminal):
    try:
        env = _parse(text, dict)
        for k, v in env.items():
            if not isinstance(v, str) or not k or '=' in k or '\0' in k or '\0' in v:
                raise ValueError('the entry %r is no NAME=value pair' % (k,))
    except ValueError as e:
        sys.stderr.write('usage: %%environ {"NAME": "value", ...}: %s\n' % e)
        return 1
    os.environ.update(env)
    if user_code is not None:
        try:
            user_code.renew()
        except OSError as e:
            log('cannot start the user-code process with the new environment now (%s); the next run tries again' % e)
    old = terminal.hangup() if terminal is not None else None
    sys.stdout.write(json.dumps([old] if old is not None else []) + '\n')
    return 0


def wait_shell(text, terminal):
    try:
        old = _parse(text, list)
    except ValueError as e:
        sys.stderr.write('usage: %%shells-wait [pid, ...]: %s\n' % e)
        return 1
    deadline = time.monotonic() + 3
    while terminal is not None and time.monotonic() < deadline:
        pid = terminal.shell_pid()
        if pid is not None and pid not in old:
            break
        time.sleep(0.01)
    return 0
