/**
 * The Jupyter app in a real browser: `agentctl open <kernel> jupyter
 * --forward PORT` starts the app of a kernel of the Jupyter image and prints
 * its URL; Debian's Chromium (headless, a new empty profile, no network but
 * loopback) opens it through the forward, the notebook list renders with a
 * file of the kernel's home, and a screenshot is written under the test's
 * output (TEST_OUTPUT_DIR, default test-output/browser). An error page or a
 * login form fails the test.
 */
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { chromium } from 'playwright-core';
import { methods } from '../../src/rpc/methods.js';
import { freePort, onCleanup, REPO_ROOT, requireEtcd, startAgent, TEST_JUPYTER_LANG, uniqueName } from '../helpers/env.js';

const run = promisify(execFile);
const CHROMIUM = '/usr/bin/chromium';
const AGENTCTL = path.join(REPO_ROOT, 'dist/src/cli/agentctl.js');
const OUTPUT = process.env.TEST_OUTPUT_DIR ?? path.join(REPO_ROOT, 'test-output', 'browser');
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Runs `agentctl open ... --forward` and resolves with the URL it prints; the process is stopped after the test. */
function agentctlOpen(agentPort: number, kernelId: string, localPort: number): Promise<string> {
  const child = spawn(process.execPath, [
    AGENTCTL,
    '--agent',
    `tcp://127.0.0.1:${agentPort}`,
    'open',
    kernelId,
    'jupyter',
    '--forward',
    String(localPort),
  ]);
  onCleanup(async () => {
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  });
  let out = '';
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(out.split('\n')[0]!.trim());
    });
    child.once('exit', (code) => reject(new Error(`agentctl open exited with ${code}: ${err}`)));
  });
}

describe('Jupyter in a real browser', function () {
  this.timeout(180_000);
  before(async () => {
    await requireEtcd();
    if (!existsSync(CHROMIUM))
      throw new Error(`${CHROMIUM} is missing: deploy/dev/prepare.sh (PREPARE_TESTS=1, as test.sh runs it) installs Debian's chromium`);
  });

  it('opens the notebook URL that agentctl open --forward prints, with the notebook list and a screenshot', async () => {
    const { client, port } = await startAgent();
    const id = uniqueName('k');
    await client.call(methods.create_kernel, id, {
      lang: TEST_JUPYTER_LANG,
      limits: { cpu_slot: 1, mem_slot: 1024, gpu_slot: 0 },
      mounts: [],
      environ: {},
    });
    await client.call(methods.upload_file, id, 'greeting-from-the-test.txt', Buffer.from('hello\n'));
    const local = await freePort();
    const url = await agentctlOpen(port, id, local);
    expect(url).to.match(new RegExp(`^http://127\\.0\\.0\\.1:${local}/\\?token=[0-9a-f]{32}$`));

    const profile = await fs.mkdtemp(path.join(os.tmpdir(), 'chromium-profile-'));
    onCleanup(() => fs.rm(profile, { recursive: true, force: true }));
    const browser = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: FLAGS });
    onCleanup(() => browser.close());
    const page = browser.pages()[0] ?? (await browser.newPage());
    const res = await page.goto(url, { waitUntil: 'load', timeout: 60_000 });
    expect(res?.status(), 'the page answered with an error').to.be.below(400);
    await fs.mkdir(OUTPUT, { recursive: true });
    const shot = path.join(OUTPUT, `jupyter-${id}.png`);
    try {
      expect(await page.locator('input[type=password]').count(), 'a login form the test cannot pass').to.equal(0);
      // Once in a loaded suite the page stayed blank (its scripts never ran) for 30 s; a user would reload, and so does the test, once.
      await page
        .locator('#notebook_list')
        .waitFor({ state: 'visible', timeout: 30_000 })
        .catch(async () => {
          await page.reload({ waitUntil: 'load', timeout: 60_000 });
          await page
            .locator('#notebook_list')
            .waitFor({ state: 'visible', timeout: 60_000 })
            .catch(async (err: Error) => {
              // say what the notebook server answered for the listing the page asks for, and what the kernel logged
              const api = await page.request.get(new URL(`/api/contents?type=directory&${new URL(url).search.slice(1)}`, url).href).then(
                async (r) => `${r.status()} ${(await r.text()).slice(0, 600)}`,
                (e: Error) => e.message,
              );
              const logs = (await client.call(methods.get_logs, id)).logs.slice(-1500);
              throw new Error(`${err.message}\n/api/contents answered: ${api}\nkernel log tail: ${logs}`);
            });
        });
      await page.getByText('greeting-from-the-test.txt').first().waitFor({ state: 'visible', timeout: 30_000 });
      const title = await page.title();
      expect(title).to.match(/Home|Jupyter/);
      expect(title).to.not.match(/error|40\d|50\d/i);
    } finally {
      await page.screenshot({ path: shot, fullPage: true });
    }
    expect((await fs.stat(shot)).size).to.be.above(1000);

    // Without --forward: the app runs already, so the URL is the node's, without a token; there the login form shows (what the check above catches).
    const plain = await run(process.execPath, [AGENTCTL, '--agent', `tcp://127.0.0.1:${port}`, 'open', id, 'jupyter']);
    const direct = (await client.call(methods.list_kernels)).find((k) => k.id === id)!.services[0]!;
    expect(plain.stdout.trim()).to.equal(`http://127.0.0.1:${direct.host_port}/`);
    expect(plain.stderr).to.match(/jupyter was already running; it keeps the token it was started with/);
    await page.goto(plain.stdout.trim(), { waitUntil: 'load', timeout: 60_000 });
    expect(await page.locator('input[type=password]').count()).to.be.above(0);
  });
});
