#!/usr/bin/python3
"""Calls a compute agent over the Callosum wire as a Backend.AI 24.09 manager
packs it, from Python: pyzmq and msgpack (Debian's python3-zmq and
python3-msgpack), with real pickles of stand-in classes of the manager's
module and class names (the pickles name only those).

Usage: python3 callosum_client.py tcp://HOST:PORT MARKER_PATH
Prints one JSON object with the outcome of each call. MARKER_PATH is a file
that a pickle refused by the agent would create if it were ever run.
"""
import enum, json, os, pickle, sys, types, uuid

import msgpack
import zmq

for n in ('ai', 'ai.backend', 'ai.backend.common', 'ai.backend.common.events'):
    sys.modules[n] = types.ModuleType(n)


class KernelLifecycleEventReason(enum.Enum):
    USER_REQUESTED = 'user-requested'


KernelLifecycleEventReason.__module__ = 'ai.backend.common.events'
sys.modules['ai.backend.common.events'].KernelLifecycleEventReason = KernelLifecycleEventReason


class Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, ('touch ' + self.path,))


def default(obj):
    if isinstance(obj, tuple):
        return list(obj)
    if isinstance(obj, uuid.UUID):
        return msgpack.ExtType(1, obj.bytes)
    if isinstance(obj, (enum.Enum, Evil)):
        return msgpack.ExtType(6, pickle.dumps(obj, protocol=5))
    raise TypeError(repr(obj))


def packb(v):
    return msgpack.packb(v, use_bin_type=True, strict_types=True, default=default)


def unpackb(b):
    return msgpack.unpackb(b, raw=False, use_list=False, strict_map_key=False)


class Client:
    def __init__(self, endpoint, generation='1.x', okey=''):
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVTIMEO, 5000)
        self.sock.connect(endpoint)
        self.generation, self.okey, self.seq = generation, okey, 0

    def handshake(self):
        self.sock.send_multipart([b'PING', b'', b''])
        return [f.decode() for f in self.sock.recv_multipart()]

    def call(self, method, *args, **kwargs):
        self.seq += 1
        header = packb({'type': 1, 'meth': method, 'okey': self.okey, 'seq': self.seq, 'zip': False})
        body = packb({'meta': b'', 'body': packb({'args': args, 'kwargs': kwargs})})
        self.sock.send_multipart(([b'UPPER'] if self.generation == '1.x' else []) + [header, body])
        frames = self.sock.recv_multipart()
        if self.generation == '1.x':
            assert frames[0] == b'UPPER', frames
            frames = frames[1:]
        h, b = unpackb(frames[0]), unpackb(frames[1])
        # the real client matches (meth, okey, seq) with the types they went out in
        assert (h['meth'], h['okey'], h['seq']) == (method, self.okey, self.seq), h
        assert type(h['okey']) is type(self.okey), h
        if h['type'] == 2:
            return {'result': unpackb(b['body'])}
        name, rep, _tb = unpackb(b['meta'])
        return {'failure': name, 'repr': rep}


def main():
    endpoint, marker = sys.argv[1], sys.argv[2]
    c = Client(endpoint)
    kid, sid = str(uuid.uuid4()), str(uuid.uuid4())
    out = {
        'handshake': c.handshake(),
        'ping': c.call('ping', 'from python'),
        'health': c.call('health'),
        'destroy_enum': c.call('destroy_kernel', kid, sid, KernelLifecycleEventReason.USER_REQUESTED),
        'evil': c.call('ping', Evil(marker)),
        'unknown': c.call('no_such_method', 1),
        'legacy_09': Client(endpoint, '0.9', b'').call('ping', 'from 0.9'),
    }
    print(json.dumps(out))


main()
