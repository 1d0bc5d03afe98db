/**
 * The pure parts of the security work: the settings of the lock-down and of
 * CURVE, the findings for `agent check`, the container lock-down Docker is
 * asked for, key files and Z85, the ZAP answers, and the checks of hostile
 * kernel configs.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import * as zmq from 'zeromq';
import { securityHostConfig } from '../../src/adapters/docker.js';
import { formatKeyPair, loadKeyPair, parseKeyPair } from '../../src/config/keys.js';
import { securityFindings } from '../../src/config/security.js';
import { compileSettings, defaultSettings } from '../../src/config/settings.js';
import { parseKernelConfig } from '../../src/containers/spec.js';
import { resolveImage } from '../../src/config/lang.js';
import { z85Decode, z85Encode } from '../../src/wire/z85.js';
import { answer, registerZapDomain, zapDomains } from '../../src/wire/zap.js';

describe('security settings and findings', () => {
  it('defaults to every protection on except CURVE, which 2018 managers do not speak', () => {
    const s = defaultSettings();
    expect(s).to.include({
      kernelNoNewPrivileges: true,
      kernelSeccomp: 'default',
      kernelPidsLimit: 1024,
      kernelNofileLimit: 4096,
      kernelPublishAddr: '',
      rpcKeypairFile: '',
    });
    expect(s.kernelCapabilities).to.deep.equal(['SETUID', 'SETGID', 'CHOWN', 'DAC_OVERRIDE']);
    expect(securityFindings(s).map((f) => f.name)).to.deep.equal(['rpc_keypair_file']);
  });

  it('reports each protection the settings turn off, with a fix', () => {
    const { settings, problems } = compileSettings(
      {
        rpc_keypair_file: '/etc/agent.key',
        kernel_no_new_privileges: 'false',
        kernel_capabilities: 'docker-default',
        kernel_seccomp: 'unconfined',
        kernel_pids_limit: '0',
        kernel_nofile_limit: '0',
        kernel_publish_addr: '0.0.0.0',
        image_prefix: '',
      },
      {},
    );
    expect(problems).to.deep.equal([]);
    const findings = securityFindings(settings);
    expect(findings.map((f) => f.name)).to.deep.equal([
      'rpc_allowed_keys',
      'kernel_no_new_privileges',
      'kernel_capabilities',
      'kernel_seccomp',
      'kernel_pids_limit',
      'kernel_nofile_limit',
      'kernel_publish_addr',
      'image_prefix',
    ]);
    for (const f of findings) expect(f.fix).to.be.a('string').and.not.equal('');
    const extra = securityFindings(compileSettings({ kernel_capabilities: 'cap_setuid,SETGID,NET_RAW' }, {}).settings);
    expect(extra.find((f) => f.name === 'kernel_capabilities')?.detail).to.match(/extra capabilities: NET_RAW/);
  });

  it('refuses bad values of the new settings, naming the key', () => {
    const c = compileSettings(
      {
        rpc_allowed_keys: 'short',
        kernel_seccomp: 'off',
        kernel_pids_limit: '-1',
        rpc_keypair_file: 'relative.key',
        kernel_no_new_privileges: 'maybe',
        image_allow_list: 'UPPER:1',
      },
      {},
    );
    expect(c.problems.map((p) => p.source.replace('config/agent/', ''))).to.have.members([
      'rpc_allowed_keys',
      'kernel_seccomp',
      'kernel_pids_limit',
      'rpc_keypair_file',
      'kernel_no_new_privileges',
      'image_allow_list',
    ]);
    const key = zmq.curveKeyPair().publicKey;
    expect(compileSettings({ rpc_allowed_keys: `${key}, ${key}\n` }, {}).settings.rpcAllowedKeys).to.deep.equal([key]);
  });

  it('asks Docker for the lock-down, and for nothing the settings turned off', () => {
    expect(
      securityHostConfig({
        noNewPrivileges: true,
        capabilities: ['SETUID', 'SETGID'],
        seccomp: 'default',
        pidsLimit: 10,
        nofileLimit: 20,
        log: { maxBytes: 1024, maxFiles: 3 },
      }),
    ).to.deep.equal({
      Privileged: false,
      SecurityOpt: ['no-new-privileges'],
      CapDrop: ['ALL'],
      CapAdd: ['SETUID', 'SETGID'],
      PidsLimit: 10,
      Ulimits: [{ Name: 'nofile', Soft: 20, Hard: 20 }],
      LogConfig: { Type: 'json-file', Config: { 'max-size': '1024', 'max-file': '3' } },
    });
    // The log bound is never turned off: a kernel printing without end would fill the Docker data root.
    expect(
      securityHostConfig({
        noNewPrivileges: false,
        capabilities: null,
        seccomp: 'unconfined',
        pidsLimit: 0,
        nofileLimit: 0,
        log: { maxBytes: 5 * 1024 * 1024, maxFiles: 2 },
      }),
    ).to.deep.equal({
      Privileged: false,
      SecurityOpt: ['seccomp=unconfined'],
      LogConfig: { Type: 'json-file', Config: { 'max-size': '5242880', 'max-file': '2' } },
    });
  });
});

describe('CURVE keys and the ZAP handler', () => {
  it('round-trips Z85 and agrees with the keys libzmq makes', () => {
    const pair = zmq.curveKeyPair();
    expect(z85Decode(pair.publicKey)).to.have.length(32);
    expect(z85Encode(z85Decode(pair.publicKey))).to.equal(pair.publicKey);
    expect(z85Encode(Buffer.from([0x86, 0x4f, 0xd2, 0x6f, 0xb5, 0x59, 0xf7, 0x5b]))).to.equal('HelloWorld'); // RFC 32's example
    expect(() => z85Decode('Hello"orld')).to.throw(/not a Z85 character/);
  });

  it('reads the key file it writes, and refuses a damaged or world-readable one', async () => {
    const pair = zmq.curveKeyPair();
    expect(parseKeyPair(formatKeyPair(pair), 'f')).to.deep.equal(pair);
    expect(() => parseKeyPair('curve\n    public-key = "abc"\n', 'f')).to.throw(/no valid public-key/);
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'keys-'));
    try {
      const file = path.join(dir, 'k');
      await fs.writeFile(file, formatKeyPair(pair), { mode: 0o640 });
      await fs.chmod(file, 0o640);
      await loadKeyPair(file).then(
        () => expect.fail('loaded a group-readable key'),
        (e: Error) => expect(e.message).to.match(/chmod 600/),
      );
      await fs.chmod(file, 0o600);
      expect(await loadKeyPair(file)).to.deep.equal(pair);
      await loadKeyPair(path.join(dir, 'none')).then(
        () => expect.fail('loaded a missing file'),
        (e: Error) => expect(e.message).to.match(/agent keygen --out/),
      );
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it("answers ZAP requests by the domain's allow-list, counting refusals; unknown domains and mechanisms are refused", async () => {
    const good = zmq.curveKeyPair();
    const bad = zmq.curveKeyPair();
    const refused: string[] = [];
    const unregister = await registerZapDomain('unit-domain', { allows: (k) => k === good.publicKey, onRefused: (k) => refused.push(k) });
    try {
      const req = (domain: string, mech: string, key: string) => [
        Buffer.from('1.0'),
        Buffer.from('7'),
        Buffer.from(domain),
        Buffer.from('127.0.0.1'),
        Buffer.alloc(0),
        Buffer.from(mech),
        z85Decode(key),
      ];
      const status = (frames: Buffer[]) => frames.slice(0, 3).map((f) => f.toString());
      expect(status(answer(req('unit-domain', 'CURVE', good.publicKey)))).to.deep.equal(['1.0', '7', '200']);
      expect(status(answer(req('unit-domain', 'CURVE', bad.publicKey)))).to.deep.equal(['1.0', '7', '400']);
      expect(status(answer(req('other-domain', 'CURVE', good.publicKey)))).to.deep.equal(['1.0', '7', '400']);
      expect(status(answer(req('unit-domain', 'PLAIN', good.publicKey)))).to.deep.equal(['1.0', '7', '400']);
      expect(status(answer([Buffer.from('2.0'), Buffer.from('8')]))).to.deep.equal(['1.0', '8', '500']);
      expect(refused).to.deep.equal([bad.publicKey]);
      await registerZapDomain('unit-domain', { allows: () => true }).then(
        () => expect.fail('registered a domain twice'),
        (e: Error) => expect(e.message).to.match(/already/),
      );
    } finally {
      await unregister();
    }
  });

  it('binds the handler again at once after its last domain goes, also while that close is under way', async () => {
    // Closing alone frees the inproc name later (in libzmq's reaper thread): a bind just after failed with EADDRINUSE about 1 time in 12.
    for (let i = 0; i < 300; i++) {
      const first = await registerZapDomain(`again-${i}`, { allows: () => true });
      const closing = first(); // the handler closes with its last domain...
      const second = await registerZapDomain(`again-${i}-next`, { allows: () => true }); // ...and binds again meanwhile
      await closing;
      await second();
    }
    expect(zapDomains().filter((d) => d.startsWith('again-'))).to.deep.equal([]);
  });
});

describe('hostile kernel configs', () => {
  const parse = (config: Record<string, unknown>, prefix = 'lablup/kernel-', allow: string[] = []) =>
    parseKernelConfig({ lang: 'python:3', ...config }, prefix, '/mnt', allow);

  it('resolves images under the prefix or from the allow-list only', () => {
    expect(resolveImage('python:3', 'lablup/kernel-')).to.equal('lablup/kernel-python:3');
    expect(resolveImage('busybox:1', 'lablup/kernel-', ['busybox:1'])).to.equal('busybox:1');
    expect(() => resolveImage('busybox:1', '')).to.throw(/not on image_allow_list and image_prefix is empty/);
    expect(() => resolveImage('a/../../b:1', 'lablup/kernel-')).to.throw(/path segment/);
    expect(() => resolveImage('a//b:1', 'lablup/kernel-')).to.throw(/path segment/);
  });

  it('refuses reserved, malformed and oversized environ entries', () => {
    for (const key of ['LOCAL_USER_ID', 'LOCAL_GROUP_ID', 'RUNNER', 'PATH', 'BASH_ENV', 'LD_PRELOAD', 'LD_LIBRARY_PATH', 'IFS']) {
      expect(() => parse({ environ: { [key]: 'x' } }), key).to.throw(/reserved/);
    }
    expect(() => parse({ environ: { '1A': 'x' } })).to.throw(/not a variable name/);
    expect(() => parse({ environ: { A: 'x'.repeat(65_537) } })).to.throw(/at most 65536/);
    const big = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`K${i}`, 'x'.repeat(65_000)]));
    expect(() => parse({ environ: big })).to.throw(/larger than 1048576 bytes/);
    expect(parse({ environ: { LOCAL_USER: 'ok', PATHS: 'ok' } }).environ).to.deep.equal({ LOCAL_USER: 'ok', PATHS: 'ok' });
  });
});
