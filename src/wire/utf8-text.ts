/**
 * Utf8Text: text kept as the UTF-8 bytes it arrived in. A kernel's output
 * comes from the runner as UTF-8 and leaves in a msgpack `str`, which is
 * UTF-8 too; holding it as bytes spares decoding it into a JavaScript string
 * and encoding it back (most of the agent's time on a big output). The codec
 * packs one as a `str` whose payload is these bytes.
 *
 * Whoever appends vouches that the bytes, all chunks together, are valid
 * UTF-8; {@link Utf8Text.appendString} is the way for anything else.
 */
export class Utf8Text {
  private readonly parts: Buffer[] = [];
  private bytes = 0;

  /** Appends bytes that are valid UTF-8 (the caller checked). */
  appendUtf8(bytes: Buffer): this {
    if (bytes.length > 0) {
      this.parts.push(bytes);
      this.bytes += bytes.length;
    }
    return this;
  }

  /** Appends a JavaScript string. */
  appendString(s: string): this {
    return this.appendUtf8(Buffer.from(s, 'utf8'));
  }

  /** Appends another text's bytes. */
  appendText(t: Utf8Text): this {
    for (const part of t.parts) this.appendUtf8(part);
    return this;
  }

  /** Length in bytes. */
  get byteLength(): number {
    return this.bytes;
  }

  /** The chunks in order (not to be changed). */
  get chunks(): readonly Buffer[] {
    return this.parts;
  }

  toString(): string {
    return Buffer.concat(this.parts, this.bytes).toString('utf8');
  }

  toJSON(): string {
    return this.toString();
  }
}
