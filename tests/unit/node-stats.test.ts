/**
 * NodeMonitor on a fake /proc: CPU percent from /proc/stat deltas (since
 * boot on the first read, then over the window since an earlier sample),
 * memory from /proc/meminfo, and the parsers on their own.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { NodeMonitor, parseCpuLine, parseMeminfo } from '../../src/node/stats.js';
import { onCleanup } from '../helpers/env.js';

const MEMINFO = 'MemTotal:       24684084 kB\nMemFree:        24026272 kB\nMemAvailable:   24212076 kB\nHugePages_Total:       0\n';

describe('node stats (fake /proc)', () => {
  it('computes CPU busy percent over the window between reads, and memory in bytes', async () => {
    const proc = await fs.mkdtemp(path.join(os.tmpdir(), 'fake-proc-'));
    onCleanup(() => fs.rm(proc, { recursive: true, force: true }));
    await fs.writeFile(path.join(proc, 'meminfo'), MEMINFO);
    // user nice system idle iowait irq softirq steal guest guest_nice: busy 200 of 1000
    await fs.writeFile(path.join(proc, 'stat'), 'cpu  100 0 100 700 100 0 0 0 50 0\ncpu0 100 0 100 700 100 0 0 0 50 0\nintr 1\n');
    const monitor = new NodeMonitor(proc, { procRoot: proc });
    const first = await monitor.read();
    expect(first.cpu_pct).to.equal(20); // since boot
    expect(first.mem_total_bytes).to.equal(24684084 * 1024);
    expect(first.mem_available_bytes).to.equal(24212076 * 1024);
    expect(first.disk_total_bytes).to.be.above(0);
    expect(first.disk_free_bytes).to.be.within(0, first.disk_total_bytes);

    // +150 busy, +50 idle: 75 % over the window, not the 29 % since boot
    await fs.writeFile(path.join(proc, 'stat'), 'cpu  200 0 150 750 100 0 0 0 50 0\n');
    expect((await monitor.read()).cpu_pct).to.equal(75);
    // a read less than 1 s later still measures from the first sample, not over a window of a few jiffies
    expect((await monitor.read()).cpu_pct).to.equal(75);
  });

  it('parses the aggregate cpu line and meminfo', () => {
    expect(parseCpuLine('cpu  1 2 3 4 5 6 7 8 9 10\n', 5)).to.deep.equal({ at: 5, busy: 1 + 2 + 3 + 6 + 7 + 8, total: 36 });
    expect(() => parseCpuLine('cpu0 1 2 3\n', 0)).to.throw(/no aggregate cpu line/);
    expect(parseMeminfo(MEMINFO)).to.include({ MemTotal: 24684084 * 1024, HugePages_Total: 0 });
  });
});
