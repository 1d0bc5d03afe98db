/**
 * A restricted reader of the Python pickles that a modern (23.03+)
 * Backend.AI manager puts inside msgpack ext types 3, 6, 7, 8 and 16
 * (docs/modern-managers.rst): it reads them into plain values and never runs
 * anything. It knows the few opcodes those pickles use (protocol 5 of a
 * Decimal, an enum member, a dataclass-like object, a UserDict, an int
 * subclass) and the few globals they name; any other opcode or global is a
 * ParametersError, raised before anything is built from it.
 *
 * What comes out: `decimal.Decimal("1.5")` -> the string `"1.5"` (exact);
 * an enum member -> its value (by value or, as Python 3.12 pickles it, by
 * name through `builtins.getattr`, allowed for that alone); an object (NEWOBJ + BUILD) -> its field map;
 * a `ResourceSlot` -> its `data` map; a `BinarySize` -> its int.
 *
 * Its work is bounded, not only its size: lists, dicts and tuples stay the
 * reader's own nodes (shared by the memo as Python shares them) until STOP,
 * and are then copied once into a plain tree, each value copied spending
 * from a {@link DecodeBudget}. A memo-shared DAG or a cycle is refused by
 * the budget or the depth bound before it expands, and what comes out
 * shares nothing.
 */
import { DecodeBudget } from './decode-bounds.js';
import { Dict, Global, List, MARK, Pending, plain, refuse, Tuple, type GlobalKind } from './pickle-nodes.js';

const ENUMS_OF_TYPES = [
  'SlotTypes',
  'AutoPullBehavior',
  'ServicePortProtocols',
  'SessionTypes',
  'SessionResult',
  'ClusterMode',
  'MountPermission',
  'MountTypes',
  'VFolderUsageMode',
  'RuntimeVariant',
  'AbuseReportValue',
];

/**
 * Python 3.12 pickles an enum member by name (`getattr(cls, "NAME")`), 3.11
 * by value (`cls("value")`). A name reads as its value: the 24.09 enums
 * allowed here all have the value `name.lower()` with "_" as "-", except
 * these.
 */
const ENUM_VALUES_BY_NAME: Readonly<Record<string, Readonly<Record<string, string>>>> = {
  'ai.backend.common.types.MountPermission': { READ_ONLY: 'ro', READ_WRITE: 'rw', RW_DELETE: 'wd' },
};

function enumValueOf(path: string, name: string): string | undefined {
  if (!/^[A-Z][A-Z0-9_]{0,63}$/.test(name)) return undefined;
  const table = ENUM_VALUES_BY_NAME[path];
  return table ? table[name] : name.toLowerCase().replace(/_/g, '-');
}

/** The globals a pickle may name, `module.name` -> kind; nothing else is accepted. */
export const ALLOWED_GLOBALS: ReadonlyMap<string, GlobalKind> = new Map<string, GlobalKind>([
  ['decimal.Decimal', 'decimal'],
  ['builtins.getattr', 'getattr'],
  ['ai.backend.common.events.KernelLifecycleEventReason', 'enum'],
  ['ai.backend.common.docker.ImageRef', 'object'],
  ['ai.backend.common.types.ResourceSlot', 'userdict'],
  ['ai.backend.common.types.BinarySize', 'int'],
  ...ENUMS_OF_TYPES.map((n): [string, GlobalKind] => [`ai.backend.common.types.${n}`, 'enum']),
]);

/** Largest pickle read: a manager's values are small. */
const MAX_PICKLE_BYTES = 1024 * 1024;

/**
 * The most work one pickle may take: opcodes run plus values copied out (a
 * str or bytes also 1 per 64 bytes). A manager's pickle is one small value
 * (tests/fixtures/modern-values.json: a Decimal is 16 units, an ImageRef
 * 47, a ResourceSlot of two slots 48, some 15 a slot more), and 4,096 units
 * take well under a millisecond, so a pickle that expands (memo-shared
 * tuples: 117 bytes for 2^28 values) is refused at once. It bounds the
 * stack, the memo and every list too.
 */
export const MAX_PICKLE_WORK = 4096;

/**
 * The most work the pickles of one request may take together (a part of
 * the request's budget, src/wire/decode-bounds.ts): as much as 64 pickles
 * at {@link MAX_PICKLE_WORK}, where the largest call that carries pickles
 * (create_kernels, 64 kernels at most) has a few small ones a kernel. It
 * keeps a request of many pickles, each within its bound, to a fraction of
 * a second.
 */
export const MAX_REQUEST_PICKLE_WORK = 64 * MAX_PICKLE_WORK;

/**
 * Reads one pickle into a plain value; `what` names it in errors (e.g.
 * `ext type 6 (Enum)`). Throws ParametersError for anything it does not know
 * and for a pickle whose work would pass {@link MAX_PICKLE_WORK} or what is
 * left of `request`'s budget (the decode of the request it came in).
 */
export function readPickle(data: Uint8Array, what = 'pickle', request?: DecodeBudget): unknown {
  if (data.length > MAX_PICKLE_BYTES) refuse(what, `it is larger than ${MAX_PICKLE_BYTES} bytes`);
  const budget = new DecodeBudget(MAX_PICKLE_WORK, request);
  const buf = Buffer.from(data.buffer, data.byteOffset, data.length);
  const stack: unknown[] = [];
  const memo: unknown[] = [];
  let at = 0;
  const need = (n: number) => {
    if (at + n > buf.length) refuse(what, 'it is truncated');
  };
  const pop = (): unknown => {
    if (stack.length === 0 || stack[stack.length - 1] === MARK) refuse(what, 'its stack underflows');
    return stack.pop();
  };
  const popMark = (): unknown[] => {
    const i = stack.lastIndexOf(MARK);
    if (i < 0) refuse(what, 'it has no MARK where one is needed');
    const items = stack.splice(i);
    items.shift();
    return items;
  };
  const top = (): unknown => {
    if (stack.length === 0) refuse(what, 'its stack is empty');
    return stack[stack.length - 1];
  };
  const push = (v: unknown) => {
    stack.push(v);
  };
  const str = (n: number) => {
    need(n);
    const s = buf.toString('utf8', at, at + n);
    at += n;
    return s;
  };
  const bytes = (n: number) => {
    need(n);
    const b = Buffer.from(buf.subarray(at, at + n));
    at += n;
    return b;
  };
  const key = (k: unknown): string => {
    if (typeof k === 'string') return k;
    if (typeof k === 'number') return String(k);
    return refuse(what, 'a map key is not a str or an int');
  };
  const setItems = (map: unknown, items: unknown[]) => {
    if (!(map instanceof Dict)) refuse(what, 'SETITEM(S) on something that is not a dict');
    if (items.length % 2 !== 0) refuse(what, 'SETITEMS with an odd number of values');
    for (let i = 0; i < items.length; i += 2) map.entries.push([key(items[i]), items[i + 1]]);
  };
  const call = (callee: unknown, args: unknown, op: string): unknown => {
    if (!(callee instanceof Global)) return refuse(what, `${op} of something that is not an allowed global`);
    if (!(args instanceof Tuple)) return refuse(what, `${op} without an argument tuple`);
    const a = args.items;
    switch (callee.kind) {
      case 'decimal':
        if (
          op !== 'REDUCE' ||
          a.length !== 1 ||
          typeof a[0] !== 'string' ||
          !/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^[-+]?(Infinity|NaN|sNaN)$/.test(a[0])
        ) {
          return refuse(what, 'a Decimal must be built from one numeric str');
        }
        return a[0];
      case 'enum':
        if (op !== 'REDUCE' || a.length !== 1) return refuse(what, `enum ${callee.path} must be built from one value`);
        return a[0];
      case 'getattr': {
        // only getattr(<an allowed enum>, "MEMBER"), as Python 3.12 pickles an enum member
        const [cls, name] = a;
        if (op !== 'REDUCE' || a.length !== 2 || !(cls instanceof Global) || cls.kind !== 'enum' || typeof name !== 'string') {
          return refuse(what, 'getattr is read only as an enum member by name');
        }
        const value = enumValueOf(cls.path, name);
        if (value === undefined) return refuse(what, `${cls.path} has no member ${JSON.stringify(name.slice(0, 64))}`);
        return value;
      }
      case 'int':
        if (op !== 'NEWOBJ' || a.length !== 1 || (typeof a[0] !== 'number' && typeof a[0] !== 'bigint'))
          return refuse(what, `${callee.path} must be built from one int`);
        return a[0];
      case 'object':
      case 'userdict':
        if (op !== 'NEWOBJ' || a.length !== 0) return refuse(what, `${callee.path} must be built by NEWOBJ with no arguments`);
        return new Pending(callee);
    }
  };

  for (;;) {
    need(1);
    budget.spend(1, what);
    const op = buf[at++]!;
    switch (op) {
      case 0x80: // PROTO
        need(1);
        if (buf[at]! < 2 || buf[at]! > 5) refuse(what, `pickle protocol ${buf[at]} is not read (2 to 5 are)`);
        at += 1;
        break;
      case 0x95: // FRAME: a length hint only
        need(8);
        at += 8;
        break;
      case 0x2e: {
        // STOP
        if (stack.length !== 1 || stack[0] === MARK) refuse(what, 'it does not end with exactly one value');
        if (at !== buf.length) refuse(what, 'it has bytes after STOP');
        return plain(stack[0], budget, what);
      }
      case 0x94:
        memo.push(top());
        break;
      case 0x68:
      case 0x6a: {
        const n = op === 0x68 ? (need(1), buf[at]!) : (need(4), buf.readUInt32LE(at));
        at += op === 0x68 ? 1 : 4;
        if (n >= memo.length) refuse(what, `memo entry ${n} does not exist`);
        push(memo[n]);
        break;
      }
      case 0x8c:
        need(1);
        push(str(buf[at++]!));
        break;
      case 0x58:
        need(4);
        at += 4;
        push(str(buf.readUInt32LE(at - 4)));
        break;
      case 0x43:
        need(1);
        push(bytes(buf[at++]!));
        break;
      case 0x42:
        need(4);
        at += 4;
        push(bytes(buf.readUInt32LE(at - 4)));
        break;
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof name !== 'string' || typeof module !== 'string') refuse(what, 'STACK_GLOBAL needs a module and a name');
        const path = `${module}.${name}`;
        const kind = ALLOWED_GLOBALS.get(path);
        if (!kind) refuse(what, `the global ${JSON.stringify(path.slice(0, 200))} is not one this agent expects`);
        push(new Global(path, kind));
        break;
      }
      case 0x28:
        push(MARK);
        break;
      case 0x29:
        push(new Tuple([]));
        break;
      case 0x85:
      case 0x86:
      case 0x87: {
        const n = op - 0x84;
        const items: unknown[] = [];
        for (let i = 0; i < n; i++) items.unshift(pop());
        push(new Tuple(items));
        break;
      }
      case 0x74:
        push(new Tuple(popMark()));
        break;
      case 0x7d:
        push(new Dict());
        break;
      case 0x73: {
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: {
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case 0x5d:
        push(new List());
        break;
      case 0x61:
      case 0x65: {
        const items = op === 0x61 ? [pop()] : popMark();
        const list = top();
        if (!(list instanceof List)) refuse(what, 'APPEND(S) on something that is not a list');
        for (const x of items) list.items.push(x);
        break;
      }
      case 0x4e:
        push(null);
        break;
      case 0x88:
        push(true);
        break;
      case 0x89:
        push(false);
        break;
      case 0x4a:
        need(4);
        push(buf.readInt32LE(at));
        at += 4;
        break;
      case 0x4b:
        need(1);
        push(buf[at++]!);
        break;
      case 0x4d:
        need(2);
        push(buf.readUInt16LE(at));
        at += 2;
        break;
      case 0x8a: {
        // LONG1: little-endian two's complement of n bytes
        need(1);
        const n = buf[at++]!;
        if (n > 8) refuse(what, 'an int wider than 64 bits is not read');
        need(n);
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(buf[at + i]!);
        if (n > 0 && buf[at + n - 1]! & 0x80) v -= 1n << BigInt(8 * n);
        at += n;
        push(v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
        break;
      }
      case 0x47:
        need(8);
        push(buf.readDoubleBE(at));
        at += 8;
        break;
      case 0x52:
      case 0x81: {
        const args = pop();
        const callee = pop();
        push(call(callee, args, op === 0x52 ? 'REDUCE' : 'NEWOBJ'));
        break;
      }
      case 0x62: {
        // BUILD
        const state = pop();
        const obj = pop();
        if (!(obj instanceof Pending)) refuse(what, 'BUILD on something that is not a new object');
        if (!(state instanceof Dict)) refuse(what, `the state of ${obj.cls.path} is not a field map`);
        if (obj.cls.kind === 'userdict') {
          const data = state.get('data');
          if (!(data instanceof Dict)) refuse(what, `${obj.cls.path} has no data map`);
          push(data);
        } else {
          push(state);
        }
        break;
      }
      default:
        refuse(what, `opcode 0x${op.toString(16).padStart(2, '0')} at byte ${at - 1} is not one this reader knows`);
    }
  }
}
