/**
 * The SSH key pair of a session of several kernels (docs/sessions.rst,
 * "SSH among the kernels"): the one a modern manager sends as
 * `cluster_info.ssh_keypair` (24.09 makes an RSA pair per session), or one
 * the agent makes when the call has none. The agent leaves it in each
 * kernel's `.config` (id_cluster, id_cluster.pub); the kernel's runner puts
 * it in ~/.ssh and starts the image's sshd on port 2200 with it.
 *
 * The pair comes from the manager's byte stream, and its public half goes
 * into authorized_keys: it must be one line of one key (no options, no
 * second key), the private half one PEM or OpenSSH block.
 */
import { generateKeyPairSync } from 'node:crypto';
import { ParametersError } from '../errors.js';

export interface SshKeypair {
  publicKey: string;
  privateKey: string;
}

/** Largest half of a key pair: an RSA 16384 private key is about 12 KiB. */
const MAX_KEY_BYTES = 16 * 1024;
/** One public key in the authorized_keys form: type, base64, an optional printable comment. */
const PUBLIC = /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/]+={0,3}( [\x21-\x7e][\x20-\x7e]{0,199})?$/;
/** One private key block: PEM (RSA, EC, PKCS#8) or OpenSSH's own. */
const PRIVATE = /^-----BEGIN ((RSA |EC |OPENSSH )?PRIVATE KEY)-----\n[A-Za-z0-9+/=\n]+\n-----END \1-----\n?$/;

/**
 * Reads `cluster_info.ssh_keypair` ({public_key, private_key}); null when absent or both halves are empty (a
 * manager without a pair); a ParametersError naming what is wrong.
 */
export function readSshKeypair(raw: unknown): SshKeypair | null {
  if (raw === undefined || raw === null) return null;
  if (typeof raw !== 'object' || Array.isArray(raw) || raw instanceof Uint8Array)
    throw new ParametersError('cluster_info ssh_keypair must be a map of public_key and private_key');
  const { public_key: pub, private_key: priv } = raw as Record<string, unknown>;
  if ((pub === '' || pub === undefined || pub === null) && (priv === '' || priv === undefined || priv === null)) return null;
  const text = (v: unknown, name: string): string => {
    const s = v instanceof Uint8Array ? Buffer.from(v).toString('utf8') : v;
    if (typeof s !== 'string') throw new ParametersError(`cluster_info ssh_keypair ${name} must be a str`);
    if (Buffer.byteLength(s) > MAX_KEY_BYTES) throw new ParametersError(`cluster_info ssh_keypair ${name} is over ${MAX_KEY_BYTES} bytes`);
    return s.replace(/\r\n/g, '\n');
  };
  const publicKey = text(pub, 'public_key').trim();
  const privateKey = text(priv, 'private_key').trim() + '\n';
  if (!PUBLIC.test(publicKey))
    throw new ParametersError(
      'cluster_info ssh_keypair public_key must be one OpenSSH public key on one line (ssh-rsa, ssh-ed25519 or ecdsa-sha2-*, base64, a comment)',
    );
  if (!PRIVATE.test(privateKey))
    throw new ParametersError('cluster_info ssh_keypair private_key must be one unencrypted PEM or OpenSSH private key block');
  return { publicKey, privateKey };
}

/** A length-prefixed string of the SSH wire format (RFC 4251). */
function sshString(b: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(b.length);
  return Buffer.concat([len, b]);
}

/** A new ECDSA P-256 key pair: the private key in PEM (SEC1), the public one as a line of authorized_keys. */
export function newSshKeypair(comment = 'compute-agent-session'): SshKeypair {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = publicKey.export({ format: 'jwk' });
  const point = Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x!, 'base64url'), Buffer.from(jwk.y!, 'base64url')]);
  const blob = Buffer.concat([sshString(Buffer.from('ecdsa-sha2-nistp256')), sshString(Buffer.from('nistp256')), sshString(point)]);
  return {
    publicKey: `ecdsa-sha2-nistp256 ${blob.toString('base64')} ${comment}`,
    privateKey: privateKey.export({ type: 'sec1', format: 'pem' }) as string,
  };
}
