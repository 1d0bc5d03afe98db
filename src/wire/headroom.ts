/**
 * Headroom: a big byte view whose maker left a few bytes of its own memory
 * free just before it, so that whoever sends it may write a frame header
 * there and send header and bytes as one view, without copying hundreds of
 * MiB (a download's archive; the msgpack codec in src/wire/codec.ts uses it).
 * The maker writes nothing in the room; the sender writes nothing else.
 */

/** Bytes of room a view marked here has before it. */
export const HEADROOM_BYTES = 16;

const marked = new WeakSet<Uint8Array>();

/** Marks a view as having HEADROOM_BYTES free before it, in memory the caller owns (not a pooled slab). */
export function withHeadroom<T extends Uint8Array>(view: T): T {
  if (view.byteOffset < HEADROOM_BYTES) throw new Error('withHeadroom: the view has no room before it');
  marked.add(view);
  return view;
}

/** Whether a view was marked by {@link withHeadroom}. */
export function hasHeadroom(view: Uint8Array): boolean {
  return marked.has(view);
}
