"""The kernel's apps (docs/service-ports.rst): `start-service` launches an app
the image declares (its definition in /opt/kernel/service-defs/<name>.json)
as the kernel user in /home/work, waits until its port accepts connections
and answers one `service-result` record; `shutdown-service` stops it. Each
request is answered from a thread of its own, so the input thread never
waits for an app. Options (a token, a password) go to the app only: they are
never logged, and are masked in the output lines a failure reports. Nothing
is restarted behind the agent's back: an app that died is reported `failed`
(with its last output lines) on the next `start-service`, and started again
on the one after."""
import collections
import json
import os
import secrets
import signal
import socket
import subprocess
import threading
import time

from common import HOME, log
from output import send_json

DEFS_DIR = os.environ.get('SERVICE_DEFS_DIR', '/opt/kernel/service-defs')
START_TIMEOUT = 60.0     # seconds an app has to accept connections (the agent waits longer)
STOP_GRACE = 5.0         # seconds between SIGTERM and SIGKILL
TAIL_LINES = 20          # output lines kept per app for a failure report

_lock = threading.Lock()
_apps = {}               # name -> App
_busy = {}               # name -> threading.Lock (one start or stop of an app at a time)


class App:
    def __init__(self, name, port, proc, secrets_):
        self.name = name
        self.port = port
        self.proc = proc
        self.secrets = [s for s in secrets_ if s]
        self.tail = collections.deque(maxlen=TAIL_LINES)
        threading.Thread(target=self._read, name='app-%s' % name, daemon=True).start()

    def _read(self):
        for raw in iter(self.proc.stdout.readline, b''):
            self.tail.append(raw.decode('utf-8', 'replace').rstrip('\n'))
        self.proc.stdout.close()

    def last_output(self):
        text = ' | '.join(line for line in self.tail if line.strip())
        for s in self.secrets:
            text = text.replace(s, '***')
        return text or '(nothing)'


def _accepts(port):
    try:
        with socket.create_connection(('127.0.0.1', port), timeout=0.5):
            return True
    except OSError:
        return False


def _definition(name):
    path = os.path.join(DEFS_DIR, os.path.basename(name) + '.json')
    try:
        with open(path) as f:
            d = json.load(f)
    except FileNotFoundError:
        return None
    if not isinstance(d, dict) or not isinstance(d.get('command'), list) or not d['command']:
        raise ValueError('%s has no command list' % path)
    return d


def _fill(text, values):
    for k, v in values.items():
        text = text.replace('{%s}' % k, v)
    return text


def _stop(app):
    try:
        os.killpg(app.proc.pid, signal.SIGTERM)
    except OSError:
        pass
    try:
        app.proc.wait(STOP_GRACE)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(app.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        app.proc.wait()


def start(req):
    name = req.get('name')
    port = req.get('port')
    options = req.get('options') if isinstance(req.get('options'), dict) else {}
    if not isinstance(name, str) or not isinstance(port, int):
        return {'status': 'failed', 'error': 'start-service needs a name and a port'}
    app = _apps.get(name)
    if app is not None:
        code = app.proc.poll()
        if code is None:
            return {'status': 'running'}
        del _apps[name]  # reported once; the next start launches it again
        return {'status': 'failed', 'error': '%s exited with status %d; its last output: %s' % (name, code, app.last_output())}
    try:
        d = _definition(name)
    except Exception as e:
        return {'status': 'failed', 'error': 'bad definition of %s: %s' % (name, e)}
    if d is None:
        return {'status': 'failed', 'error': 'invalid service name'}
    if _accepts(port):
        return {'status': 'running'}  # started by an earlier runner of this kernel
    values = {k: str(v) for k, v in options.items() if isinstance(v, (str, int, float))}
    for k in d.get('random', []):  # options the app needs that the caller did not give (e.g. a token)
        values.setdefault(k, secrets.token_hex(16))
    values.update({'port': str(port), 'home': HOME})
    secret_values = [v for k, v in values.items() if k not in ('port', 'home')]
    argv = [_fill(str(a), values) for a in d['command']]
    env = dict(os.environ)
    env.update({str(k): _fill(str(v), values) for k, v in (d.get('env') or {}).items()})
    try:
        proc = subprocess.Popen(argv, cwd=HOME, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as e:
        return {'status': 'failed', 'error': 'cannot start %s: %s' % (name, e.strerror or e)}
    app = App(name, port, proc, secret_values)
    log('starting app %s on port %d (pid %d)' % (name, port, proc.pid))  # never its options
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            time.sleep(0.2)  # the reader takes the last lines
            return {'status': 'failed', 'error': '%s exited with status %d; its last output: %s' % (name, code, app.last_output())}
        if _accepts(port):
            _apps[name] = app
            return {'status': 'started'}
        time.sleep(0.1)
    _stop(app)
    return {'status': 'failed', 'error': '%s did not accept connections on port %d within %d s; its last output: %s'
            % (name, port, START_TIMEOUT, app.last_output())}


def shutdown(req):
    name = req.get('name')
    app = _apps.pop(name, None) if isinstance(name, str) else None
    if app is None or app.proc.poll() is not None:
        return {'status': 'not-running'}
    _stop(app)
    log('stopped app %s' % name)
    return {'status': 'stopped'}


def _answer(fn, payload, tag):
    try:
        req = json.loads(payload.decode('utf-8'))
        if not isinstance(req, dict):
            raise ValueError('not a JSON object')
    except Exception as e:
        send_json('service-result', {'status': 'failed', 'error': 'bad request: %s' % e}, tag)
        return
    name = req.get('name') if isinstance(req.get('name'), str) else ''
    with _lock:
        busy = _busy.setdefault(name, threading.Lock())
    try:
        with busy:
            result = fn(req)
    except Exception as e:
        result = {'status': 'failed', 'error': 'the runner failed: %s' % e}
    send_json('service-result', result, tag)


def handle(rtype, payload, tag):
    """Called by the input thread for `start-service` / `shutdown-service`; answers from a thread of its own."""
    fn = start if rtype == 'start-service' else shutdown
    threading.Thread(target=_answer, args=(fn, payload, tag), name=rtype, daemon=True).start()
