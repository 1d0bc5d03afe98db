"""The output of runs kept until the agent acknowledges it: the runner's side
of the `keep` extension (docs/running-code.rst, "Kept output")."""
import collections
import threading

KEEP_RUNS = 32                 # finished runs whose output is kept for an agent at most
KEEP_BYTES = 64 * 1024 * 1024  # output bytes kept for an agent at most
KEPT_TYPES = ('stdout', 'stderr', 'media', 'html', 'waiting-input', 'build-finished', 'finished')


class Keep:
    """The output of runs kept until the agent acknowledges it (the `keep`
    extension: docs/running-code.rst, "Kept output").

    An agent that asks for it in its `hello` (payload `{"keep": true}`) gets
    every record of a run numbered (`"s"` in the meta frame, from 1 per run
    tag); it acknowledges what it handed on (`ack`, payload `{"s": n}`) and,
    after a restart, asks for the rest (`resend`, payload `{"from": n}`): so a
    run that ends while no agent listens loses nothing. Bounded: the last
    KEEP_RUNS finished runs and KEEP_BYTES in all; what is dropped first is
    the oldest output, and a resend then starts with a marker saying how much
    (a stderr record with `"lost": true`, numbered as the last record lost)."""

    def __init__(self, out_q, tagging):
        self.out_q = out_q        # the output thread's queue
        self.tagging = tagging    # output.Tagging: the meta frames
        self.lock = threading.RLock()
        self.enabled = False
        self.runs = collections.OrderedDict()  # tag -> entry, oldest first
        self.bytes = 0

    def open(self, tag, run):
        """A job of a run starts: its records are kept from now on (a batch run's exec goes on its build's numbers)."""
        if not self.enabled or tag is None or run is None:
            return
        with self.lock:
            if tag not in self.runs:
                self.runs[tag] = {'seq': 0, 'acked': 0, 'lost': 0, 'lost_upto': 0,
                                  'recs': collections.deque(), 'done': False}
                self._bound()

    def holds(self, tag):
        with self.lock:
            return tag in self.runs

    def acked(self, tag):
        with self.lock:
            e = self.runs.get(tag)
            return e['acked'] if e else 0

    def put(self, rtype, payload, tag, counted, late=False):
        """Queues a record for sending; one of a kept run is numbered and kept."""
        with self.lock:
            e = self.runs.get(tag) if tag is not None and self.tagging.enabled and rtype in KEPT_TYPES else None
            if e is None:
                self.out_q.put((rtype.encode('ascii'), payload, counted, self.tagging.meta(tag, late=late)))
                return
            e['seq'] += 1
            e['recs'].append((e['seq'], rtype, payload))
            self.bytes += len(payload)
            if rtype == 'finished':
                e['done'] = True
            self.out_q.put((rtype.encode('ascii'), payload, counted, self.tagging.meta(tag, seq=e['seq'])))
            self._bound()

    def ack(self, tag, seq):
        with self.lock:
            e = self.runs.get(tag)
            if e is None or not isinstance(seq, int):
                return
            e['acked'] = max(e['acked'], seq)
            while e['recs'] and e['recs'][0][0] <= seq:
                self.bytes -= len(e['recs'].popleft()[2])
            if e['done'] and not e['recs']:
                del self.runs[tag]

    def resend(self, tag, frm):
        """Queues again what is kept of a run from record `frm` on (a marker first where some of it was dropped)."""
        with self.lock:
            e = self.runs.get(tag)
            if e is None or not isinstance(frm, int):
                return
            if e['lost_upto'] >= frm:
                line = ('[%d bytes of output were dropped: more than %d runs or %d MiB waited for an agent]\n'
                        % (e['lost'], KEEP_RUNS, KEEP_BYTES // (1024 * 1024))).encode('utf-8')
                self.out_q.put((b'stderr', line, False, self.tagging.meta(tag, seq=e['lost_upto'], lost=True)))
            for seq, rtype, payload in e['recs']:
                if seq >= frm:
                    self.out_q.put((rtype.encode('ascii'), payload, False, self.tagging.meta(tag, seq=seq)))

    def _bound(self):
        done = [t for t, e in self.runs.items() if e['done']]
        for t in done[:max(0, len(done) - KEEP_RUNS)]:
            self.bytes -= sum(len(r[2]) for r in self.runs.pop(t)['recs'])
        for e in self.runs.values():  # the oldest output first; a run's end record stays
            while self.bytes > KEEP_BYTES and e['recs'] and e['recs'][0][1] != 'finished':
                seq, _t, payload = e['recs'].popleft()
                self.bytes -= len(payload)
                e['lost'] += len(payload)
                e['lost_upto'] = seq
            if self.bytes <= KEEP_BYTES:
                break
