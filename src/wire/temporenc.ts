/**
 * A reader of temporenc, the datetime encoding inside msgpack ext type 2 of
 * the modern manager (docs/modern-managers.rst). It gives an ISO 8601 string:
 * with `+00:00` when the value carries a zone (temporenc stores zoned values
 * in UTC), without one otherwise; a missing component is an error.
 */
import { ParametersError } from '../errors.js';

function bits(data: Uint8Array): { take(n: number): number } {
  let pos = 0;
  return {
    take(n: number): number {
      let v = 0;
      for (let i = 0; i < n; i++, pos++) v = v * 2 + ((data[pos >> 3]! >> (7 - (pos & 7))) & 1);
      return v;
    },
  };
}

const pad = (n: number, w = 2) => String(n).padStart(w, '0');

function bad(why: string): never {
  throw new ParametersError(`ext type 2 (datetime): ${why}`);
}

/** Reads one temporenc value (types D, T, DT, DTZ, DTS, DTSZ) into an ISO 8601 string. */
export function readTemporenc(data: Uint8Array): string {
  const b = bits(data);
  const first = data[0];
  if (first === undefined) bad('it is empty');
  let kind: string;
  if (first >> 5 === 0b100) kind = 'D';
  else if (first >> 1 === 0b1010000) kind = 'T';
  else if (first >> 6 === 0b00) kind = 'DT';
  else if (first >> 6 === 0b01) kind = 'DTS';
  else if (first >> 5 === 0b110) kind = 'DTZ';
  else if (first >> 5 === 0b111) kind = 'DTSZ';
  else return bad(`unknown type tag in byte 0x${first.toString(16)}`);
  const tagBits = { D: 3, T: 7, DT: 2, DTS: 2, DTZ: 3, DTSZ: 3 }[kind]!;
  b.take(tagBits);
  const precision = kind === 'DTS' || kind === 'DTSZ' ? b.take(2) : 3;
  const sizes: Record<string, number[] | number> = { D: 3, T: 3, DT: 5, DTZ: 6, DTS: [7, 8, 9, 6], DTSZ: [8, 9, 10, 7] };
  const size = sizes[kind]!;
  const want = typeof size === 'number' ? size : size[precision]!;
  if (data.length !== want) bad(`a ${kind} value has ${want} bytes, got ${data.length}`);
  let date = '';
  let time = '';
  if (kind !== 'T') {
    const year = b.take(12);
    const month = b.take(4);
    const day = b.take(5);
    if (year === 4095 || month === 15 || day === 31) bad('the date is incomplete');
    if (month > 11) bad('the month is out of range');
    date = `${pad(year, 4)}-${pad(month + 1)}-${pad(day + 1)}`;
  }
  if (kind !== 'D') {
    const hour = b.take(5);
    const minute = b.take(6);
    const second = b.take(6);
    if (hour === 31 || minute === 63 || second === 63) bad('the time is incomplete');
    if (hour > 23 || minute > 59 || second > 60) bad('the time is out of range');
    time = `${pad(hour)}:${pad(minute)}:${pad(second)}`;
    const fraction = [10, 20, 30, 0][precision]!;
    if (fraction) {
      const f = b.take(fraction);
      time += '.' + pad(f, [3, 6, 9][precision]!);
    }
  }
  let zone = '';
  if (kind === 'DTZ' || kind === 'DTSZ') {
    const z = b.take(7);
    if (z !== 127) zone = '+00:00';
  }
  if (kind === 'D') return date;
  if (kind === 'T') return time;
  return `${date}T${time}${zone}`;
}
