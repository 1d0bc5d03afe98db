/**
 * The agent's CURVE key pair file: written by `agent keygen`, named by the
 * `rpc_keypair_file` setting, read at start. The format is ZeroMQ's
 * certificate format (as CZMQ's zcert and pyzmq's `zmq.auth` read it), so a
 * manager written in Python can load the public half with
 * `zmq.auth.load_certificate`:
 *
 *     curve
 *         public-key = "<40 Z85 characters>"
 *         secret-key = "<40 Z85 characters>"
 *
 * The file must be readable by its owner only (0600), like an ssh key.
 */
import { promises as fs } from 'node:fs';
import * as zmq from 'zeromq';
import { ConfigError } from '../errors.js';
import { Z85_KEY } from '../wire/z85.js';

/** A CURVE key pair in Z85. */
export interface KeyPair {
  publicKey: string;
  secretKey: string;
}

/** The text of a key pair file. */
export function formatKeyPair(pair: KeyPair): string {
  return [
    '#   compute-agent CURVE key pair (ZeroMQ certificate format); keep it secret (mode 0600)',
    'metadata',
    'curve',
    `    public-key = "${pair.publicKey}"`,
    `    secret-key = "${pair.secretKey}"`,
    '',
  ].join('\n');
}

/** Reads the keys out of a key pair file's text; throws naming what is missing. */
export function parseKeyPair(text: string, file: string): KeyPair {
  const get = (name: string) => {
    const m = new RegExp(`^\\s*${name}\\s*=\\s*"([^"]*)"\\s*$`, 'm').exec(text);
    if (!m || !Z85_KEY.test(m[1]!))
      throw new ConfigError(`${file} has no valid ${name} (40 Z85 characters): write a new one with agent keygen --out ${file}`);
    return m[1]!;
  };
  return { publicKey: get('public-key'), secretKey: get('secret-key') };
}

/** Writes a new key pair to `file` (mode 0600); refuses to overwrite an existing file. Returns the pair. */
export async function generateKeyPairFile(file: string): Promise<KeyPair> {
  const pair = zmq.curveKeyPair();
  try {
    await fs.writeFile(file, formatKeyPair(pair), { mode: 0o600, flag: 'wx' });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw new ConfigError(`${file} exists already: remove it first if you mean to replace the agent's keys`);
    throw new ConfigError(`cannot write ${file} (${code ?? (err as Error).message})`);
  }
  return pair;
}

/** Loads the key pair named by `rpc_keypair_file`; refuses a file that others may read. */
export async function loadKeyPair(file: string): Promise<KeyPair> {
  let st;
  try {
    st = await fs.stat(file);
  } catch {
    throw new ConfigError(`rpc_keypair_file ${file} does not exist: create it with agent keygen --out ${file}`);
  }
  if ((st.mode & 0o077) !== 0)
    throw new ConfigError(`rpc_keypair_file ${file} may be read by others (mode ${(st.mode & 0o777).toString(8)}): chmod 600 ${file}`);
  return parseKeyPair(await fs.readFile(file, 'utf8'), file);
}
