/**
 * The codec of modern (Callosum) managers: msgpack as Backend.AI 23.03+
 * packs it, with its ext types read into plain values (docs/modern-managers.rst): 1 UUID -> its canonical str, 2 datetime -> an ISO 8601 str,
 * 4 and 5 paths -> str, and 3 Decimal, 6 Enum, 7 ImageRef, 8 ResourceSlot,
 * 16 BinarySize through the restricted pickle reader (src/wire/pickle.ts).
 * Replies are plain msgpack, as the aiozmq codec writes them.
 *
 * The ext readers are registered with msgpackr (its registry is global),
 * but answer only while this codec is decoding: to the aiozmq codec an ext
 * of these numbers stays an unknown extension, as before.
 */
import { addExtension, Unpackr } from 'msgpackr';
import { ParametersError } from '../errors.js';
import { msgpackCodec, type Codec } from './codec.js';
import { checkMsgpackBounds, DecodeBudget } from './decode-bounds.js';
import { MAX_REQUEST_PICKLE_WORK, readPickle } from './pickle.js';
import { readTemporenc } from './temporenc.js';

/** The ext type numbers of the modern manager (common/msgpack.py ExtTypes). */
export const MODERN_EXT_TYPES = {
  UUID: 1,
  DATETIME: 2,
  DECIMAL: 3,
  POSIX_PATH: 4,
  PURE_POSIX_PATH: 5,
  ENUM: 6,
  IMAGE_REF: 7,
  RESOURCE_SLOT: 8,
  BINARY_SIZE: 16,
} as const;

const EXT_NAMES: Record<number, string> = Object.fromEntries(Object.entries(MODERN_EXT_TYPES).map(([k, v]) => [v, k]));

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Reads one modern ext value into a plain value; throws ParametersError when
 * it cannot. A pickle spends from `budget`, its request's decode budget.
 */
export function readModernExt(type: number, data: Uint8Array, budget?: DecodeBudget): unknown {
  const what = `ext type ${type} (${EXT_NAMES[type] ?? '?'})`;
  switch (type) {
    case MODERN_EXT_TYPES.UUID: {
      if (data.length !== 16) throw new ParametersError(`${what} must be 16 bytes, got ${data.length}`);
      const h = Buffer.from(data).toString('hex');
      return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
    }
    case MODERN_EXT_TYPES.DATETIME:
      return readTemporenc(data);
    case MODERN_EXT_TYPES.POSIX_PATH:
    case MODERN_EXT_TYPES.PURE_POSIX_PATH:
      try {
        return utf8.decode(data);
      } catch {
        throw new ParametersError(`${what} is not valid UTF-8`);
      }
    case MODERN_EXT_TYPES.DECIMAL:
    case MODERN_EXT_TYPES.ENUM:
    case MODERN_EXT_TYPES.IMAGE_REF:
    case MODERN_EXT_TYPES.RESOURCE_SLOT:
    case MODERN_EXT_TYPES.BINARY_SIZE:
      return readPickle(data, what, budget);
    default:
      throw new ParametersError(`msgpack ext type ${type} is not one of the modern manager's`);
  }
}

let decodingModern = false;
/** The budget of the pickles of the decode under way (a part of its request's). */
let decodeBudget: DecodeBudget | undefined;

for (const type of Object.values(MODERN_EXT_TYPES)) {
  addExtension({
    type,
    unpack(data: Uint8Array) {
      if (!decodingModern) throw new Error(`Unknown extension type ${type}`);
      return readModernExt(type, data, decodeBudget);
    },
  } as unknown as Parameters<typeof addExtension>[0]);
}

const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

/**
 * The codec of Callosum bodies: modern ext types in, plain msgpack out. A
 * decode given a budget (a request's) is bounded by it, its pickles
 * together also by MAX_REQUEST_PICKLE_WORK; without one, each pickle is
 * still bounded by its own.
 */
export const modernCodec: Codec = {
  encode: (value) => msgpackCodec.encode(value),
  decode(bytes: Uint8Array, budget?: DecodeBudget): unknown {
    if (budget) checkMsgpackBounds(bytes, budget, 'msgpack');
    decodingModern = true;
    decodeBudget = budget && new DecodeBudget(MAX_REQUEST_PICKLE_WORK, budget);
    try {
      return unpackr.unpack(bytes);
    } finally {
      decodingModern = false;
      decodeBudget = undefined;
    }
  },
};
