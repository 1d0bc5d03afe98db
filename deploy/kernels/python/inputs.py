"""The runner's input thread (docs/wire-contract.rst, "Kernel runner ports"):
it owns the PULL socket of port 2000, queues code/build/exec jobs for the
executor (runner.py), and answers what needs no job at once: hello, status,
completions, input for a run, interrupts, acknowledgements and resends of
kept output, and the service ports' start and stop."""
import json
import os
import signal
import threading
import time
import traceback

import msgpack
import zmq

import common
import completions
import services
from common import log
from output import keep, send, send_json, tagging


def input_meta(frames):
    """The agent's tag frame of an input, or {} (an agent that does not tag)."""
    if len(frames) < 3:
        return {}
    try:
        m = json.loads(frames[2].decode('utf-8'))
    except Exception:
        return {}
    if not isinstance(m, dict):
        return {}
    tagging.enabled = True
    if m.get('keep') is True:
        keep.enabled = True  # the agent keeps its runs' output: so does a runner that started after its hello
    return m




def payload_json(payload):
    """A JSON object payload, or {}."""
    try:
        o = json.loads(payload.decode('utf-8')) if payload else {}
    except Exception:
        return {}
    return o if isinstance(o, dict) else {}




class Inputs:
    """What the input thread answers from: the runner's shared state, the
    user-code child (None where user code runs in the runner) and the main
    thread, which runs user code in the runner and takes its SIGINT."""

    def __init__(self, state, user_code, main_thread):
        self.state = state
        self.user_code = user_code
        self.main_thread = main_thread

    def complete(self, payload, tag):
        """Answers a `complete` request: names from the namespace of user code (none in a shell kernel)."""
        try:
            opts = json.loads(payload.decode('utf-8')) if payload else {}
            if isinstance(opts, str):
                opts = {'code': opts}
            code = str(opts.get('code', ''))
        except Exception:
            code = ''
        if common.SHELL_KERNEL:
            send_json('completion', [], tag)
        elif self.user_code is not None:
            self.user_code.complete(code, tag)  # the child answers
        else:
            send_json('completion', self.complete_here(code), tag)



    def complete_here(self, code):
        try:
            return completions.names(self.state.namespace, code)
        except Exception as e:
            log('completion failed: %s' % e)
            return []

    def interrupt(self):
        with self.state.lock:
            cur = self.state.current
            proc = self.state.proc
            self.state.interrupts += 1
            n = self.state.interrupts
        if proc is not None:
            sig = signal.SIGINT if n == 1 else signal.SIGKILL
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
            except Exception as e:
                log('cannot signal the subprocess: %s' % e)
        elif cur == 'code' and self.user_code is not None:
            self.user_code.interrupt(n)
        elif cur == 'code':
            # In user code, or waiting for a lock or about to start: still interrupt it.
            with self.state.lock:
                job = self.state.job
                self.state.sigint_sent = job
            signal.pthread_kill(self.main_thread, signal.SIGINT)
            threading.Thread(target=self.resend_sigint, args=(job,), name='interrupt', daemon=True).start()



    def resend_sigint(self, job):
        """Sends SIGINT again while its handler has not run for the job: a signal
        that lands after a blocking call (time.sleep, a lock, a read) checked for
        signals but before it entered the kernel is taken by no one until that
        call ends, which may be never. Once the handler ran, user code that
        caught the KeyboardInterrupt is left to go on."""
        for delay in (0.05, 0.1, 0.2, 0.4, 0.8, 1.6):
            time.sleep(delay)
            with self.state.lock:
                if self.state.sigint_sent is not job or self.state.job is not job:
                    return
            signal.pthread_kill(self.main_thread, signal.SIGINT)



    def hello(self):
        """The runner's identity and what it holds: the agent synchronises with it."""
        with self.state.lock:
            return {
                'generation': common.GENERATION,
                'pid': os.getpid(),
                'protocol': 1,
                'features': ['keep'],
                'previous': None if common.PREVIOUS_STATUS is None else {'status': common.PREVIOUS_STATUS},
                'current': dict(self.state.job, acked=keep.acked(self.state.job['t'])) if self.state.job else None,
                'queue': [{'t': j[2], 'run': j[3]} for j in self.state.jobs],
                # Keeping, a run whose every record was acknowledged (or dropped) is not held any more.
                'recent': [dict(r, acked=keep.acked(r['t'])) for r in self.state.recent if not keep.enabled or keep.holds(r['t'])],
            }



    def run(self, sock):
        while True:
            try:
                frames = sock.recv_multipart()
            except zmq.ContextTerminated:
                return
            except Exception as e:
                log('receive failed: %s' % e)
                time.sleep(0.1)
                continue
            try:
                rtype = frames[0].decode('utf-8', 'replace')
                payload = frames[1] if len(frames) > 1 else b''
                meta = input_meta(frames)
                tag = meta.get('t') if isinstance(meta.get('t'), str) else None
                run = meta.get('run') if isinstance(meta.get('run'), str) else None
                if rtype in ('code', 'build', 'exec'):
                    with self.state.jobs_cv:
                        self.state.jobs.append((rtype, payload.decode('utf-8', 'replace'), tag, run))
                        self.state.jobs_cv.notify()
                elif rtype == 'hello':
                    if payload_json(payload).get('keep') is True:
                        keep.enabled = True
                    send_json('hello', self.hello(), tag)
                elif rtype == 'input':
                    with self.state.inputs_cv:
                        if len(self.state.inputs) < 1000:
                            self.state.inputs.append((tag, payload.decode('utf-8', 'replace')))
                        self.state.inputs_cv.notify_all()
                elif rtype == 'ack' and tag is not None:
                    keep.ack(tag, payload_json(payload).get('s'))
                elif rtype == 'resend' and tag is not None:
                    keep.resend(tag, payload_json(payload).get('from'))
                elif rtype == 'interrupt':
                    self.interrupt()
                elif rtype == 'complete':
                    self.complete(payload, tag)
                elif rtype in ('start-service', 'shutdown-service'):
                    services.handle(rtype, payload, tag)
                elif rtype == 'status':
                    with self.state.lock:
                        st = {'busy': self.state.busy, 'queue': len(self.state.jobs), 'current': self.state.current,
                              'generation': common.GENERATION}
                    send('status', msgpack.packb(st, use_bin_type=True), tag)
                else:
                    log('ignoring a record of type %r' % rtype)
            except Exception:
                log('bad record: %s' % traceback.format_exc())
