/**
 * The bounds a kernel container is made with and reported through: its log
 * (get_logs' answer, src/kernels/endings.ts), its /dev/shm (src/containers/),
 * and the JSON document of `agent check --json` (src/cli/check/checks.ts).
 * The real Docker side is in tests/security/kernel-logs.test.ts and
 * tests/integration/shm.test.ts.
 */
import { expect } from 'chai';
import { logsAnswer } from '../../src/kernels/endings.js';
import { containerRequest } from '../../src/containers/launch.js';
import { imageTraits } from '../../src/containers/image-traits.js';
import { parseKernelConfig, shmMiBOf } from '../../src/containers/spec.js';
import { containerSecurity } from '../../src/config/security.js';
import { compileSettings, defaultSettings } from '../../src/config/settings.js';
import { checkDocument } from '../../src/cli/check/checks.js';

describe('kernel limits: logs, /dev/shm and the check document', () => {
  it('answers get_logs as read when nothing was cut, and says so on a first line when it was', () => {
    expect(logsAnswer({ text: 'a\nb\n', cutBytes: 0, linesFull: false })).to.equal('a\nb\n');
    const cut = logsAnswer({ text: 'z\n', cutBytes: 4096, linesFull: false }).split('\n');
    expect(cut[0]).to.match(
      /^\[agent\] earlier output is cut \(4096 bytes of it left out here\): get_logs answers at most the last 10000 lines and 1024 KiB/,
    );
    expect(cut.slice(1)).to.deep.equal(['z', '']);
    expect(logsAnswer({ text: 'z\n', cutBytes: 0, linesFull: true })).to.match(/^\[agent\] earlier output is cut: /);
  });

  it('sizes /dev/shm from the spec, else the setting, and labels it; the log bound comes from the settings', () => {
    expect(shmMiBOf({ shmMiB: null }, 1024)).to.equal(1024);
    expect(shmMiBOf({}, 1024)).to.equal(1024);
    expect(shmMiBOf({ shmMiB: 64 }, 1024)).to.equal(64);
    const { settings, problems } = compileSettings({ kernel_log_max_size: '3', kernel_log_max_files: '4', kernel_shm_size: '100' }, {});
    expect(problems).to.deep.equal([]);
    const req = containerRequest({
      agentId: 'i-1',
      kernelId: 'k1',
      spec: parseKernelConfig({ lang: 'python:3-debian', limits: { mem_slot: 512 } }, 'lablup/kernel-', '/mnt'),
      cpuSet: [0],
      traits: imageTraits({}),
      scratchDir: '/s/k1',
      kernelUid: 1000,
      publishHost: '127.0.0.1',
      security: containerSecurity(settings),
      shmMiB: settings.kernelShmMiB,
      createdAt: 1,
    });
    expect(req.shmBytes).to.equal(100 * 1024 * 1024);
    expect(req.labels['io.compute-agent.shm-mib']).to.equal('100');
    expect(req.security.log).to.deep.equal({ maxBytes: 3 * 1024 * 1024, maxFiles: 4 });
    expect(defaultSettings()).to.include({ kernelLogMaxMiB: 5, kernelLogMaxFiles: 2, kernelShmMiB: 1024 });
    for (const [key, value] of [
      ['kernel_log_max_size', '0'],
      ['kernel_log_max_files', 'many'],
      ['kernel_shm_size', '0'],
    ])
      expect(
        compileSettings({ [key!]: value! }, {}).problems.map((p) => p.source),
        key,
      ).to.deep.equal([`config/agent/${key}`]);
  });

  it('makes one JSON document of the checklist: ok, summary, and each check with status, message and fix', () => {
    const doc = checkDocument([
      { name: 'etcd reachable', ok: true, detail: 'answers', fix: '', warnings: [] },
      {
        name: 'security settings',
        ok: true,
        detail: '1 off',
        fix: '',
        warnings: ['kernel_seccomp: no filter; fix: set kernel_seccomp to default'],
      },
      { name: 'Docker reachable', ok: false, detail: 'no answer', fix: 'start dockerd', warnings: [] },
    ]);
    expect(doc).to.deep.equal({
      ok: false,
      summary: '1 of 3 checks failed (1 warning)',
      checks: [
        { name: 'etcd reachable', status: 'ok', message: 'answers', fix: '', warnings: [] },
        {
          name: 'security settings',
          status: 'warn',
          message: '1 off',
          fix: 'set kernel_seccomp to default',
          warnings: [{ message: 'kernel_seccomp: no filter', fix: 'set kernel_seccomp to default' }],
        },
        { name: 'Docker reachable', status: 'fail', message: 'no answer', fix: 'start dockerd', warnings: [] },
      ],
    });
  });
});
