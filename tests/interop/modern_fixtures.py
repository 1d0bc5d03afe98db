#!/usr/bin/python3
"""Writes tests/fixtures/modern-values.json: pickles and msgpack bodies
as a Backend.AI 24.09 manager packs them (common/msgpack.py), made with the
real pickle and msgpack modules of Debian's python3 and stand-in classes of
the same module and class names (the pickles name only those). Run it again
to regenerate: /usr/bin/python3 tests/interop/modern_fixtures.py"""
import dataclasses, enum, json, os, pickle, sys, types, uuid
from collections import UserDict
from decimal import Decimal
import msgpack

def module(name):
    m = types.ModuleType(name)
    sys.modules[name] = m
    return m

for n in ('ai', 'ai.backend', 'ai.backend.common'):
    module(n)
t, ev, dk = module('ai.backend.common.types'), module('ai.backend.common.events'), module('ai.backend.common.docker')

class ClusterMode(enum.Enum):
    SINGLE_NODE = 'single-node'
class SessionTypes(enum.Enum):
    INTERACTIVE = 'interactive'
class AutoPullBehavior(enum.Enum):
    DIGEST = 'digest'
class MountPermission(enum.Enum):
    READ_WRITE = 'rw'
class KernelLifecycleEventReason(enum.Enum):
    USER_REQUESTED = 'user-requested'
class BinarySize(int):
    pass
class ResourceSlot(UserDict):
    pass
@dataclasses.dataclass
class ImageRef:
    name: str
    project: str
    tag: str
    registry: str
    architecture: str
    is_local: bool
for c in (ClusterMode, SessionTypes, AutoPullBehavior, MountPermission, BinarySize, ResourceSlot):
    c.__module__ = t.__name__; c.__qualname__ = c.__name__; setattr(t, c.__name__, c)
KernelLifecycleEventReason.__module__ = ev.__name__; ev.KernelLifecycleEventReason = KernelLifecycleEventReason
ImageRef.__module__ = dk.__name__; ImageRef.__qualname__ = 'ImageRef'; dk.ImageRef = ImageRef

class Evil:
    def __reduce__(self):
        return (os.system, ('touch /tmp/compute-agent-pickle-ran',))

def default(obj):
    if isinstance(obj, tuple):
        return list(obj)
    if isinstance(obj, uuid.UUID):
        return msgpack.ExtType(1, obj.bytes)
    if isinstance(obj, BinarySize):
        return msgpack.ExtType(16, pickle.dumps(obj, protocol=5))
    if isinstance(obj, Decimal):
        return msgpack.ExtType(3, pickle.dumps(obj, protocol=5))
    if isinstance(obj, ResourceSlot):
        return msgpack.ExtType(8, pickle.dumps(obj, protocol=5))
    if isinstance(obj, enum.Enum):
        return msgpack.ExtType(6, pickle.dumps(obj, protocol=5))
    if isinstance(obj, ImageRef):
        return msgpack.ExtType(7, pickle.dumps(obj, protocol=5))
    if isinstance(obj, Evil):
        return msgpack.ExtType(6, pickle.dumps(obj, protocol=5))
    raise TypeError(repr(obj))

packb = lambda v: msgpack.packb(v, use_bin_type=True, strict_types=True, default=default)
image = ImageRef('python', 'lablup', '3-debian', 'index.docker.io', 'x86_64', False)
kid, sid = uuid.UUID('0b6e9c2e-5a3c-4d1e-9f0a-1c2d3e4f5a6b'), uuid.UUID('9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a')
out = {
    'pickles': {
        'decimal': pickle.dumps(Decimal('1.5'), protocol=5).hex(),
        'enum_reason': pickle.dumps(KernelLifecycleEventReason.USER_REQUESTED, protocol=5).hex(),
        'image_ref': pickle.dumps(image, protocol=5).hex(),
        'resource_slot': pickle.dumps(ResourceSlot({'cpu': Decimal('1'), 'mem': Decimal('268435456')}), protocol=5).hex(),
        'binary_size': pickle.dumps(BinarySize(2 ** 40), protocol=5).hex(),
        'foreign_global': pickle.dumps(Evil(), protocol=5).hex(),
        'protocol_0': pickle.dumps(Decimal('1'), protocol=0).hex(),
    },
    'bodies': {
        # {args, kwargs} of destroy_kernel with an enum reason, and of create_kernels' image refs map keyed by UUID
        'destroy_kernel': packb({'args': (str(kid), str(sid), KernelLifecycleEventReason.USER_REQUESTED), 'kwargs': {}}).hex(),
        'image_refs': packb({'args': ({kid: image},), 'kwargs': {'amount': Decimal('0.5'), 'size': BinarySize(1024), 'id': kid}}).hex(),
        'evil': packb({'args': (Evil(),), 'kwargs': {}}).hex(),
    },
}
path = os.path.join(os.path.dirname(__file__), '..', 'fixtures', 'modern-values.json')
os.makedirs(os.path.dirname(path), exist_ok=True)
with open(path, 'w') as f:
    json.dump(out, f, indent=2)
    f.write('\n')
