/**
 * The /dev/shm of kernels (docs/kernels.rst, "Shared memory"): its size is
 * kernel_shm_size or a modern manager's resource_opts.shmem; what it holds
 * is charged to the kernel's memory cgroup; a shmem that is no size, or larger than the kernel's memory, is
 * refused naming the key. Real kernels, real Docker, the 2018 and the 24.09
 * call shapes.
 */
import { expect } from 'chai';
import { methods } from '../../src/rpc/methods.js';
import { modernMethods } from '../../src/rpc/modern-methods.js';
import { kernelIds, onCleanup, remoteError, requireEtcd, startAgent, TEST_IMAGE_LANG, uniqueName } from '../helpers/env.js';
import { ModernManager, modernKernelConfig } from '../helpers/modern-manager.js';
import { consoleText, runToEnd } from '../helpers/run.js';

/** Prints what `df` says of /dev/shm's size, in MiB. */
const DF_SHM = `import subprocess\nprint(subprocess.check_output(['df', '-BM', '--output=size', '/dev/shm']).decode().split()[1])`;

/**
 * Fills /dev/shm with 100 MiB and prints how much more the kernel's memory
 * cgroup holds afterwards, in MiB (cgroup v1 or v2, as the container sees its own).
 */
const FILL_SHM = `
import os
def usage():
    for p in ('/sys/fs/cgroup/memory/memory.usage_in_bytes', '/sys/fs/cgroup/memory.current'):
        if os.path.exists(p):
            return int(open(p).read())
before = usage()
with open('/dev/shm/fill', 'wb') as f:
    for _ in range(100):
        f.write(b'\\1' * (1 << 20))
print((usage() - before) >> 20)
os.unlink('/dev/shm/fill')
`;

describe('the /dev/shm of kernels', function () {
  this.timeout(180_000);
  before(requireEtcd);

  it('is kernel_shm_size, charged to the kernel memory; resource_opts.shmem sizes it, a bad one is refused', async () => {
    const a = await startAgent({}, async (ns) => {
      await ns.put('config/agent/kernel_shm_size').value('200');
      await ns.put('config/agent/cpu_overcommit').value('3'); // three kernels of one core on any machine
    });
    const plain = uniqueName('k-shm');
    await a.client.callWithTimeout(60_000, methods.create_kernel, plain, {
      lang: TEST_IMAGE_LANG,
      limits: { cpu_slot: 1, mem_slot: 256 },
      mounts: [],
      environ: {},
    });
    expect(consoleText(await runToEnd(a.client, plain, DF_SHM), 'stdout')).to.equal('200M\n');
    const charged = Number(consoleText(await runToEnd(a.client, plain, FILL_SHM, { timeoutMs: 60_000 }), 'stdout'));
    expect(charged, 'MiB more in the memory cgroup after 100 MiB written to /dev/shm').to.be.within(95, 140);

    // A 24.09 manager: resource_opts.shmem as its BinarySize writes it, or bytes.
    const m = new ModernManager(`tcp://127.0.0.1:${a.port}`);
    onCleanup(() => m.close());
    const sid = uniqueName('s');
    const [asked, bytes] = [uniqueName('k-shm'), uniqueName('k-shm')];
    await m.createKernels(sid, [asked], [modernKernelConfig({ resource_opts: { shmem: '96m' } })]);
    await m.createKernels(sid, [bytes], [modernKernelConfig({ resource_opts: { shmem: 64 * 1024 * 1024 } })]);
    expect(consoleText([await m.executeToEnd(sid, asked, DF_SHM)], 'stdout')).to.equal('96M\n');
    expect(consoleText([await m.executeToEnd(sid, bytes, DF_SHM)], 'stdout')).to.equal('64M\n');
    // A restart with a full config that names no size keeps the kernel's.
    await m.client.call(modernMethods.restart_kernel, sid, asked, {}, modernKernelConfig());
    expect(consoleText([await m.executeToEnd(sid, asked, DF_SHM, 'r2')], 'stdout')).to.equal('96M\n');
    for (const [shmem, why] of [
      ['lots', /config resource_opts\.shmem must be a size in bytes or such as "64m" or "1g", got "lots"/],
      [
        '1g',
        /config resource_opts\.shmem asks for 1024 MiB of \/dev\/shm, more than the kernel's 256 MiB of memory \(resource_slots\.mem\)/,
      ],
      [-1, /config resource_opts\.shmem must be a size/],
    ] as const) {
      const err = await remoteError(m.createKernels(sid, [uniqueName('k-shm')], [modernKernelConfig({ resource_opts: { shmem } })]));
      expect(err.remoteType, String(shmem)).to.equal('ParametersError');
      expect(err.remoteRepr, String(shmem)).to.match(why);
    }
    expect(await kernelIds(a.client), 'the refused creates left no kernel').to.have.members([plain, asked, bytes]);
    await m.client.call(modernMethods.reset_agent);
  });
});
