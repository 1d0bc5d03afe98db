/**
 * The modern kernel creation config (src/kernels/modern-spec.ts) read into
 * the same KernelSpec as the 2018 config, and its README table.
 */
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ParametersError } from '../../src/errors.js';
import { MODERN_CONFIG_KEYS, parseModernKernelConfig } from '../../src/kernels/modern-spec.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const ctx = {
  imagePrefix: 'lablup/kernel-',
  imageAllowList: ['cr.example.com/stable/python:3.9'],
  vfolderRoot: '/vfroot',
  kernelUid: 1000,
};
const base = () => ({
  image: { canonical: 'lablup/kernel-python:3-debian', architecture: 'x86_64' },
  cluster_mode: 'single-node',
  cluster_role: 'main',
  cluster_idx: 1,
  cluster_hostname: 'main1',
  resource_slots: { cpu: '2', mem: '536870912', 'cuda.device': '0' },
  environ: { A: '1' },
  mounts: [{ name: 'data', host_path: '/vfroot/local/ab/cd', kernel_path: '/home/work/data', mount_perm: 'rw' }],
  auto_pull: 'digest',
  preopen_ports: [],
  bootstrap_script: '',
  scaling_group: 'sg1',
});

describe('modern kernel creation config', () => {
  it('reads image, slots, environ and mounts into the 2018 kernel spec, with the extras for creation_info', () => {
    const { spec, extras } = parseModernKernelConfig(base(), undefined, ctx);
    expect(spec).to.deep.include({
      lang: 'python:3-debian',
      image: 'lablup/kernel-python:3-debian',
      cpuCount: 2,
      memMiB: 512,
      environ: { A: '1' },
    });
    expect(spec.mounts).to.deep.equal([{ name: 'data', hostPath: '/vfroot/local/ab/cd' }]);
    expect(extras).to.include({ clusterRole: 'main', scalingGroup: 'sg1' });
    expect(extras.ignored).to.deep.equal(['auto_pull']);
    expect(
      parseModernKernelConfig({ ...base(), image: { canonical: 'cr.example.com/stable/python:3.9' } }, undefined, ctx).spec.image,
    ).to.equal('cr.example.com/stable/python:3.9');
  });

  it('falls back to the ImageRef of kernel_image_refs when the config has no image', () => {
    const { image: _image, ...noImage } = base();
    const ref = { name: 'kernel-python', project: 'lablup', tag: '3-debian', registry: '', architecture: 'x86_64', is_local: true };
    expect(parseModernKernelConfig(noImage, ref, ctx).spec.image).to.equal('lablup/kernel-python:3-debian');
  });

  it('refuses what it does not support, naming the key', () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ cluster_mode: 'cross-cloud' }, /config cluster_mode/],
      [{ bootstrap_script: 'x' }, /config bootstrap_script/],
      [{ startup_command: 'x' }, /config startup_command/],
      [{ preopen_ports: [8080] }, /config preopen_ports/],
      [{ uid: 0 }, /config uid/],
      [{ supplementary_gids: [27] }, /config supplementary_gids/],
      [{ resource_slots: { cpu: '1', 'cuda.shares': '0.5' } }, /resource_slots\.cuda\.shares/],
      [{ resource_slots: { cpu: 'many' } }, /resource_slots\.cpu/],
      [{ image: { canonical: 'evil/x:1' } }, /config image/],
      [{ mounts: [{ name: 'd', host_path: '/vfroot/../etc', kernel_path: '/home/work/d' }] }, /vfolder root/],
      [{ mounts: [{ name: 'd', host_path: '/vfroot/a', kernel_path: '/etc' }] }, /kernel_path/],
      [{ mounts: [{ name: 'd', host_path: '/vfroot/a', mount_perm: 'ro' }] }, /mount_perm/],
      [{ environ: { LD_PRELOAD: 'x' } }, /environ/],
    ];
    for (const [extra, re] of cases)
      expect(() => parseModernKernelConfig({ ...base(), ...extra }, undefined, ctx), JSON.stringify(extra)).to.throw(ParametersError, re);
    expect(parseModernKernelConfig({ ...base(), uid: 1000, main_gid: 1000 }, undefined, ctx).spec.lang).to.equal('python:3-debian');
  });

  it('reads resource_opts.shmem as bytes or a BinarySize string into MiB, at most the memory; 0 or none leaves the setting', () => {
    const shm = (opts: unknown) => parseModernKernelConfig({ ...base(), resource_opts: opts }, undefined, ctx).spec.shmMiB;
    expect(shm({ shmem: '64m' })).to.equal(64);
    expect(shm({ shmem: '0.25g' })).to.equal(256);
    expect(shm({ shmem: '512MiB' })).to.equal(512);
    expect(shm({ shmem: 67108864 })).to.equal(64);
    expect(shm({ shmem: '1000000' }), 'rounded up to whole MiB').to.equal(1);
    expect(shm({ shmem: 0 })).to.equal(null);
    expect(shm({})).to.equal(null);
    expect(shm(undefined)).to.equal(null);
    const { extras } = parseModernKernelConfig(
      { ...base(), resource_opts: { shmem: '64m', allow_fractional_resource_fragmentation: true } },
      undefined,
      ctx,
    );
    expect(extras.ignored).to.include('resource_opts.allow_fractional_resource_fragmentation');
    for (const [opts, re] of [
      [{ shmem: 'lots' }, /config resource_opts\.shmem must be a size in bytes or such as "64m" or "1g", got "lots"/],
      [{ shmem: -1 }, /config resource_opts\.shmem must be a size/],
      [{ shmem: '600m' }, /asks for 600 MiB of \/dev\/shm, more than the kernel's 512 MiB of memory \(resource_slots\.mem\)/],
      ['64m', /config resource_opts must be a map/],
    ] as const)
      expect(() => shm(opts), JSON.stringify(opts)).to.throw(ParametersError, re);
  });

  it("has every key in the manual's table (docs/reference/modern-config.rst), with the same treatment", () => {
    const lines = readFileSync(path.join(here, '../../../docs/reference/modern-config.rst'), 'utf8').split('\n');
    for (const k of MODERN_CONFIG_KEYS) {
      const at = lines.findIndex((l) => l.trim() === `* - \`\`${k.key}\`\``);
      expect(at, `table row of ${k.key}`).to.be.above(-1);
      expect(lines[at + 1]?.trim()).to.equal(`- ${k.treatment}`);
    }
  });
});
