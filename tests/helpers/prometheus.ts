/**
 * A strict reader of the Prometheus text exposition format (version 0.0.4)
 * for tests: every line must be a comment, `# HELP`, `# TYPE` or a sample
 * `name{label="value",...} number`; anything else throws with the line.
 */

/** The samples and declared types of one exposition. */
export interface Exposition {
  samples: Array<{ name: string; labels: Record<string, string>; value: number }>;
  types: Map<string, string>;
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const SAMPLE = new RegExp(`^(${NAME})(?:\\{(.*)\\})?\\s+(\\S+)(?:\\s+-?\\d+)?$`);
const LABEL = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(?:,|$)/y;

/** Parses an exposition; throws on the first malformed line. */
export function parsePrometheus(text: string): Exposition {
  const out: Exposition = { samples: [], types: new Map() };
  if (!text.endsWith('\n')) throw new Error('an exposition ends with a newline');
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const type = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`).exec(line);
    if (type) {
      if (out.types.has(type[1]!)) throw new Error(`TYPE of ${type[1]} given twice`);
      out.types.set(type[1]!, type[2]!);
      continue;
    }
    if (line.startsWith('#')) continue; // HELP and comments
    const m = SAMPLE.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    const body = m[2] ?? '';
    LABEL.lastIndex = 0;
    while (LABEL.lastIndex < body.length) {
      const at = LABEL.lastIndex;
      const l = LABEL.exec(body);
      if (!l) throw new Error(`bad labels at ${at} in ${JSON.stringify(line)}`);
      labels[l[1]!] = l[2]!.replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
    }
    const value = m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : Number(m[3]);
    if (Number.isNaN(value) && m[3] !== 'NaN') throw new Error(`bad value in ${JSON.stringify(line)}`);
    out.samples.push({ name: m[1]!, labels, value });
  }
  return out;
}

/** The value of the one sample with this name whose labels include `labels`; undefined when none, throws when several. */
export function sample(e: Exposition, name: string, labels: Record<string, string>): number | undefined {
  const hits = e.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (hits.length > 1) throw new Error(`${hits.length} samples of ${name} match ${JSON.stringify(labels)}`);
  return hits[0]?.value;
}
