/**
 * Locked-down kernels and hostile create_kernel input, against the real
 * agent, dockerd and kernel image: what Docker was asked for, what the code
 * in the kernel really gets, that every protection can be turned off by its
 * setting, and that a bad config is a ParametersError that takes nothing.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import Docker from 'dockerode';
import { methods } from '../../src/rpc/methods.js';
import { capturedLog } from '../helpers/log-capture.js';
import {
  containersOf,
  coresHeld,
  onCleanup,
  remoteError,
  requireEtcd,
  startAgent,
  TEST_IMAGE_LANG,
  TEST_IMAGE_PREFIX,
  uniqueName,
} from '../helpers/env.js';
import { consoleText, runToEnd } from '../helpers/run.js';
import { homesIn } from '../helpers/leftovers.js';

const docker = new Docker();
const config = (extra: Record<string, unknown> = {}) => ({
  lang: TEST_IMAGE_LANG,
  limits: { cpu_slot: 1, mem_slot: 256 },
  mounts: [],
  environ: {},
  ...extra,
});

/** What the kernel's own code sees of its privileges. */
const PROBE = [
  'import os, resource',
  'st = dict(l.split(":\\t", 1) for l in open("/proc/self/status").read().splitlines() if ":\\t" in l)',
  'print(os.getuid(), st["CapEff"].strip(), st["CapBnd"].strip(), st["NoNewPrivs"].strip(), st["Seccomp"].strip(), resource.getrlimit(resource.RLIMIT_NOFILE)[0])',
].join('\n');

describe('locked-down kernels and hostile input', function () {
  this.timeout(60_000);
  before(requireEtcd);

  it('runs kernels with no-new-privileges, only the default capabilities, default seccomp, pids and nofile limits, as the kernel user', async () => {
    const { client, agent } = await startAgent();
    const id = uniqueName('k');
    const info = await client.callWithTimeout(60_000, methods.create_kernel, id, config());
    const c = await docker.getContainer(info.container_id).inspect();
    const hc = c.HostConfig as Docker.HostConfig & { CapDrop: string[]; CapAdd: string[]; SecurityOpt: string[] };
    expect(hc.Privileged).to.equal(false);
    expect(hc.SecurityOpt).to.deep.equal(['no-new-privileges']);
    expect(hc.CapDrop).to.deep.equal(['ALL']);
    expect(hc.CapAdd).to.have.members(['SETUID', 'SETGID', 'CHOWN', 'DAC_OVERRIDE']);
    expect(hc.PidsLimit).to.equal(1024);
    expect(hc.Ulimits).to.deep.equal([{ Name: 'nofile', Soft: 4096, Hard: 4096 }]);
    expect(hc.Binds).to.deep.equal([`${path.join(agent.options.scratchRoot, id)}:/home/work:rw`]); // no docker socket, no host paths
    for (const port of [2000, 2001, 2002, 2003]) expect(hc.PortBindings![`${port}/tcp`][0].HostIp).to.equal('127.0.0.1');

    const out = consoleText(await runToEnd(client, id, PROBE), 'stdout')
      .trim()
      .split(' ');
    // uid 1000, no effective capability, CHOWN (bit 0), DAC_OVERRIDE (1), SETGID (6), SETUID (7) left in the bounding set only,
    // NoNewPrivs, seccomp filter mode
    expect(out).to.deep.equal(['1000', '0000000000000000', '00000000000000c3', '1', '2', '4096']);
    await client.call(methods.destroy_kernel, id);
  });

  it('turns each protection off only through its setting, and publishes on the configured address', async () => {
    const { client } = await startAgent({}, async (ns) => {
      for (const [k, v] of [
        ['kernel_no_new_privileges', 'false'],
        ['kernel_capabilities', 'docker-default'],
        ['kernel_seccomp', 'unconfined'],
        ['kernel_pids_limit', '0'],
        ['kernel_nofile_limit', '0'],
        ['kernel_publish_addr', '0.0.0.0'],
      ])
        await ns.put(`config/agent/${k}`).value(v!);
    });
    const id = uniqueName('k');
    const info = await client.callWithTimeout(60_000, methods.create_kernel, id, config());
    const hc = (await docker.getContainer(info.container_id).inspect()).HostConfig as Docker.HostConfig & {
      CapDrop: string[] | null;
      SecurityOpt: string[];
    };
    expect(hc.SecurityOpt).to.deep.equal(['seccomp=unconfined']);
    expect(hc.CapDrop ?? []).to.deep.equal([]);
    expect(hc.PidsLimit ?? 0).to.equal(0);
    expect(hc.Ulimits ?? []).to.deep.equal([]);
    expect(hc.PortBindings!['2000/tcp'][0].HostIp).to.equal('0.0.0.0');
    await client.call(methods.destroy_kernel, id);
  });

  it('refuses hostile create_kernel input with a ParametersError and takes nothing', async () => {
    const vroot = await fs.mkdtemp(path.join(os.tmpdir(), 'agent-vfolders-'));
    onCleanup(() => fs.rm(vroot, { recursive: true, force: true }));
    await fs.mkdir(path.join(vroot, 'host1', 'good'), { recursive: true });
    await fs.writeFile(path.join(vroot, 'host1', 'afile'), 'x');
    await fs.symlink('/etc', path.join(vroot, 'host1', 'escape'));
    const { client, agent, agentId } = await startAgent({}, async (ns) => {
      await ns.put('volumes/_mount').value(vroot);
    });
    const id = uniqueName('k');
    const cases: Array<[unknown, RegExp]> = [
      [config({ environ: { 'A-B': '1' } }), /environ key "A-B" is not a variable name/],
      [config({ environ: { ['K'.repeat(300)]: '1' } }), /is not a variable name/],
      [config({ environ: { LOCAL_USER_ID: '0' } }), /environ key LOCAL_USER_ID is reserved/],
      [config({ environ: { LD_PRELOAD: '/home/work/x.so' } }), /LD_PRELOAD is reserved/],
      [config({ environ: { BASH_ENV: '/home/work/x' } }), /BASH_ENV is reserved/],
      [config({ environ: { A: 'line\nbreak' } }), /value of A must be a single-line str/],
      [config({ environ: { A: 42 } }), /value of A must be a single-line str/],
      [
        config({ environ: Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`V${i}`, 'x'.repeat(60_000)])) }),
        /larger than 1048576 bytes/,
      ],
      [config({ mounts: [['x', '..', 'y']] }), /safe names/],
      [config({ mounts: [['x', 'host1', 'escape']] }), /leads outside the vfolder root/],
      [config({ mounts: [['x', 'host1', 'missing']] }), /does not exist/],
      [config({ mounts: [['x', 'host1', 'afile']] }), /is not a directory/],
      [config({ lang: 'python/../../../busybox:latest' }), /path segment/],
      [config({ lang: '/etc/passwd' }), /lang must be an image/],
      [config({ limits: { cpu_slot: -1 } }), /cpu_slot must be a number/],
      [config({ limits: { mem_slot: 'lots' } }), /mem_slot must be a number/],
    ];
    for (const [cfg, message] of cases) {
      const err = await remoteError(client.call(methods.create_kernel, id, cfg as Record<string, unknown>));
      expect(err.remoteType, JSON.stringify(cfg).slice(0, 120)).to.equal('aiozmq.rpc.base.ParametersError');
      expect(String(err.remoteArgs[0])).to.match(message);
    }
    for (const bad of ['../x', 'a/b', 'x'.repeat(65), '']) {
      expect((await remoteError(client.call(methods.create_kernel, bad, config()))).remoteType).to.equal('aiozmq.rpc.base.ParametersError');
    }
    expect(await containersOf(agentId)).to.have.length(0);
    expect(homesIn(agent.options.scratchRoot)).to.deep.equal([]);
    expect(await coresHeld(client)).to.equal(0);
    expect(await fs.readFile(path.join(vroot, 'host1', 'afile'), 'utf8')).to.equal('x');

    // A good mount works; a restart with a bad one is refused and the kernel keeps running.
    const info = await client.callWithTimeout(60_000, methods.create_kernel, id, config({ mounts: [['data', 'host1', 'good']] }));
    const bad = await remoteError(client.call(methods.restart_kernel, id, config({ mounts: [['data', 'host1', 'escape']] })));
    expect(String(bad.remoteArgs[0])).to.match(/leads outside/);
    expect((await docker.getContainer(info.container_id).inspect()).State.Running).to.equal(true);
    await client.call(methods.destroy_kernel, id);
  });

  it('takes images only under image_prefix or from image_allow_list', async () => {
    const log = capturedLog();
    const { client, etcd, agentId } = await startAgent(
      {},
      async (ns) => {
        await ns.put('config/agent/image_prefix').value('');
      },
      log.logger,
    );
    const id = uniqueName('k');
    const err = await remoteError(client.call(methods.create_kernel, id, config()));
    expect(String(err.remoteArgs[0])).to.match(/not on image_allow_list and image_prefix is empty/);
    const full = TEST_IMAGE_PREFIX + TEST_IMAGE_LANG;
    await etcd.put('config/agent/image_allow_list').value(full);
    await log.waitFor(/^(?=.*"message":"setting changed; applied")(?=.*"key":"image_allow_list")/);
    const info = await client.callWithTimeout(60_000, methods.create_kernel, id, config({ lang: full }));
    expect((await docker.getContainer(info.container_id).inspect()).Config.Image).to.equal(full);
    expect(await containersOf(agentId)).to.have.length(1);
    await client.call(methods.destroy_kernel, id);
  });
});
