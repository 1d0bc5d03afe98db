/**
 * A kernel's symlinks against the root agent's work in its home, tried from
 * a real kernel's own code (as its user, through runs): `.config` and
 * `.output` made links to a host folder, links in a vfolder that lead out of
 * it, and folders swapped for links while the agent uploads, lists and
 * downloads. Each attempt fails: the host folder keeps its owner, mode and
 * content, and nothing of it is listed or read. The legitimate paths still
 * work: restart, and files in the home and in a vfolder, where a vfolder's
 * path is the vfolder's host folder as the kernel sees it (also for a kernel
 * re-adopted after an agent restart).
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { methods } from '../../src/rpc/methods.js';
import { eventually, onCleanup, remoteError, requireEtcd, restartAgent, startAgent, TEST_IMAGE_LANG, uniqueName } from '../helpers/env.js';
import { consoleText, runToEnd } from '../helpers/run.js';

const config = (mounts: unknown[] = []) => ({ lang: TEST_IMAGE_LANG, limits: { cpu_slot: 1, mem_slot: 256 }, mounts, environ: { A: '1' } });

/** A host folder the kernel must never reach: labeled by its name and a file, owned by root, 0700, removed after the test. */
async function hostTarget(): Promise<{ dir: string; snapshot: () => Promise<string> }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'agent-hostile-target-'));
  onCleanup(() => fs.rm(dir, { recursive: true, force: true }));
  await fs.writeFile(path.join(dir, 'LABEL'), 'made by tests/security/home-links.test.ts; the kernel must never reach it\n');
  await fs.writeFile(path.join(dir, 'secret.txt'), 'host secret');
  const future = new Date(Date.now() + 3_600_000); // "changed during" any run of the test
  await fs.utimes(path.join(dir, 'secret.txt'), future, future);
  await fs.chmod(dir, 0o700);
  const snapshot = async () => {
    const st = await fs.stat(dir);
    const names = (await fs.readdir(dir)).sort();
    return JSON.stringify({
      uid: st.uid,
      gid: st.gid,
      mode: st.mode,
      names,
      secret: await fs.readFile(path.join(dir, 'secret.txt'), 'utf8'),
    });
  };
  return { dir, snapshot };
}

/** A vfolder root with one folder (`host1/data`, writable by the kernel user), put as volumes/_mount. */
async function vfolderRoot(): Promise<{ root: string; data: string }> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'agent-vfolders-'));
  onCleanup(() => fs.rm(root, { recursive: true, force: true }));
  const data = path.join(root, 'host1', 'data');
  await fs.mkdir(data, { recursive: true });
  await fs.chmod(data, 0o777);
  await fs.writeFile(path.join(data, 'v.txt'), 'in the vfolder');
  return { root, data };
}

const names = (listing: { files: string }) => (JSON.parse(listing.files) as Array<{ filename: string }>).map((f) => f.filename);
/** The names of the host folder's files among `found`: none, or the kernel reached it. */
const hostNames = (found: string[]) => found.filter((n) => n === 'secret.txt' || n === 'LABEL');

describe('kernel symlinks against the agent (security)', function () {
  this.timeout(120_000);
  before(requireEtcd);

  it('restart, the output listing and vfolder files never follow what the kernel planted', async () => {
    const target = await hostTarget();
    const before = await target.snapshot();
    const v = await vfolderRoot();
    const t = await startAgent({}, async (ns) => {
      await ns.put('volumes/_mount').value(v.root);
    });
    const { client, agent } = t;
    const id = uniqueName('k');
    await client.callWithTimeout(60_000, methods.create_kernel, id, config([['data', 'host1', 'data']]));
    const home = path.join(agent.options.scratchRoot, id);

    // The vfolder as the kernel sees it: an upload lands in its host folder, the listing and a download read it.
    await client.call(methods.upload_file, id, 'data/up.txt', Buffer.from('uploaded'));
    expect(await fs.readFile(path.join(v.data, 'up.txt'), 'utf8')).to.equal('uploaded');
    await client.call(methods.upload_file, id, '/home/work/data/sub/deep.txt', Buffer.from('deep'));
    expect(await fs.readFile(path.join(v.data, 'sub', 'deep.txt'), 'utf8')).to.equal('deep');
    expect(names(await client.call(methods.list_files, id, 'data'))).to.deep.equal(['sub', 'up.txt', 'v.txt']);
    expect((await client.call(methods.list_files, id, '/home/work/data/sub')).abspath).to.equal('/home/work/data/sub');
    expect((await client.call(methods.download_file, id, 'data/v.txt')).includes(Buffer.from('in the vfolder'))).to.equal(true);
    expect((await client.call(methods.download_file, id, 'data')).includes(Buffer.from('data/v.txt'))).to.equal(true);
    expect(await fs.readdir(path.join(home, 'data'))).to.deep.equal([]); // nothing in the folder the mount hides
    const seen = consoleText(await runToEnd(client, id, 'print(open("/home/work/data/up.txt").read())'), 'stdout');
    expect(seen).to.equal('uploaded\n');

    // The kernel's own code plants its links (as its user; the targets need not exist in the container).
    const plant = [
      'import os',
      'os.chdir("/home/work")',
      'os.rename(".config", ".config-mine")',
      `os.symlink(${JSON.stringify(target.dir)}, ".config")`,
      `os.symlink(${JSON.stringify(target.dir)}, ".output")`,
      `os.symlink(${JSON.stringify(target.dir)}, "data/hostlink")`,
      'os.symlink("/etc", "data/etc")',
      'os.symlink("../..", "data/up2")',
      'os.symlink("/home/work", "data/home")',
      'os.symlink("/home/work/data", "tovf")',
      'print("planted")',
    ].join('\n');
    const planted = await runToEnd(client, id, plant);
    expect(consoleText(planted, 'stdout')).to.equal('planted\n');
    expect(planted.at(-1)!.files).to.deep.equal([]); // .output leads to the host folder, whose secret.txt is "newer" than the run
    expect((await runToEnd(client, id, 'print(1)')).at(-1)!.files).to.deep.equal([]);

    // Out of the vfolder, however asked, is refused; into it through a link from the home too (the host has the hidden folder there).
    for (const [method, p] of [
      ['list', 'data/hostlink'],
      ['list', 'data/etc'],
      ['list', 'data/up2'],
      ['list', 'data/home'],
      ['list', 'tovf'],
      ['download', 'data/hostlink/secret.txt'],
      ['download', 'data/etc/passwd'],
      ['download', 'data/up2/tmp'],
      ['upload', 'data/hostlink/new.txt'],
      ['upload', 'data/etc/x'],
      ['upload', 'tovf/x'],
    ] as const) {
      const call =
        method === 'list'
          ? client.call(methods.list_files, id, p)
          : method === 'download'
            ? client.call(methods.download_file, id, p)
            : client.call(methods.upload_file, id, p, Buffer.from('pwned'));
      const err = await remoteError(call);
      expect(err.remoteType, `${method} ${p}`).to.equal('agent.InvalidPath');
    }
    // A link is archived as a link, never followed.
    const linkTar = await client.call(methods.download_file, id, 'data/hostlink');
    expect(linkTar.includes(Buffer.from('host secret'))).to.equal(false);

    // restart_kernel: .config is a link to the host folder. It is moved aside, never followed; the restart works.
    await client.callWithTimeout(60_000, methods.restart_kernel, id, config([['data', 'host1', 'data']]));
    expect(await target.snapshot()).to.equal(before);
    expect((await fs.lstat(path.join(home, '.config'))).isDirectory()).to.equal(true);
    expect(await fs.readFile(path.join(home, '.config', 'environ.txt'), 'utf8')).to.equal('A=1\n');
    const aside = (await fs.readdir(home)).filter((n) => n.startsWith('.config.moved-aside-'));
    expect(aside).to.have.length(1);
    expect(await fs.readlink(path.join(home, aside[0]!))).to.equal(target.dir);
    expect(consoleText(await runToEnd(client, id, 'print(open("/home/work/.config/environ.txt").read(), end="")'), 'stdout')).to.equal(
      'A=1\n',
    );

    // environ.txt itself a link: replaced by the file, the target untouched.
    await runToEnd(
      client,
      id,
      `import os\nos.remove("/home/work/.config/environ.txt")\nos.symlink(${JSON.stringify(target.dir + '/secret.txt')}, "/home/work/.config/environ.txt")`,
    );
    await client.callWithTimeout(60_000, methods.restart_kernel, id, config([['data', 'host1', 'data']]));
    expect((await fs.lstat(path.join(home, '.config', 'environ.txt'))).isFile()).to.equal(true);
    expect(await target.snapshot()).to.equal(before);

    // A re-adopted kernel's vfolders are read back from its container: its vfolder paths still reach the vfolder.
    const again = await restartAgent(t);
    expect(names(await again.client.call(methods.list_files, id, 'data'))).to.include.members(['up.txt', 'v.txt']);
    expect((await remoteError(again.client.call(methods.list_files, id, 'data/hostlink'))).remoteType).to.equal('agent.InvalidPath');
    await again.client.call(methods.destroy_kernel, id);
    expect(await target.snapshot()).to.equal(before);
    expect(await fs.readFile(path.join(v.data, 'v.txt'), 'utf8')).to.equal('in the vfolder'); // the vfolder outlives the kernel
  });

  it('uploads, lists, downloads and output listings stay inside while the kernel swaps folders for links', async () => {
    const target = await hostTarget();
    const before = await target.snapshot();
    const v = await vfolderRoot();
    const { client, agent } = await startAgent({}, async (ns) => {
      await ns.put('volumes/_mount').value(v.root);
    });
    const id = uniqueName('k');
    await client.callWithTimeout(60_000, methods.create_kernel, id, config([['data', 'host1', 'data']]));
    const home = path.join(agent.options.scratchRoot, id);

    // A process of the kernel's own swaps three folders for links to the host folder and back, counting its swaps; the
    // links stand about two thirds of the time, so that the agent meets them often, and the swaps themselves too.
    const loop = [
      'import os, shutil, time',
      'os.chdir("/home/work")',
      'dirs = ["d", "data/d", ".output"]',
      'for d in dirs:',
      '    os.makedirs(d, exist_ok=True)',
      '    open(d + "/in.txt", "w").write("in")',
      'n = 0',
      'while True:',
      '    try:',
      '        for d in dirs:',
      '            os.rename(d, d + ".x")',
      `            os.symlink(${JSON.stringify(target.dir)}, d)`,
      '        time.sleep(0.002)',
      '        for d in dirs:',
      '            os.unlink(d)',
      '            os.rename(d + ".x", d)',
      '        time.sleep(0.001)',
      '        n += 1',
      '    except OSError:', // an upload made the folder while it was away: put things back and go on
      '        for d in dirs:',
      '            if os.path.islink(d): os.unlink(d)',
      '            if os.path.isdir(d + ".x"):',
      '                shutil.rmtree(d, ignore_errors=True)',
      '                os.rename(d + ".x", d)',
      '    if n % 20 == 1:',
      '        open("swaps.tmp", "w").write(str(n))',
      '        os.replace("swaps.tmp", "swaps")',
    ].join('\n');
    const started = await runToEnd(
      client,
      id,
      `import subprocess, sys\nsubprocess.Popen([sys.executable, "-c", ${JSON.stringify(loop)}], start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\nprint("started")`,
    );
    expect(consoleText(started, 'stdout')).to.equal('started\n');
    const swaps = async () => Number(await fs.readFile(path.join(home, 'swaps'), 'utf8').catch(() => '0'));
    await eventually('the swapping loop is running', async () => expect(await swaps()).to.be.greaterThan(0), 30_000);
    const swapsBefore = await swaps();

    const outcomes = { ok: 0, refused: 0 };
    const attempt = async (p: Promise<unknown>) => {
      try {
        const r = await p;
        outcomes.ok++;
        return r;
      } catch (err) {
        const e = err as { remoteType?: string };
        expect(['agent.InvalidPath', 'agent.FileNotFound']).to.include(e.remoteType); // refused, or found gone meanwhile; never another failure
        outcomes.refused++;
        return null;
      }
    };
    for (let i = 0; i < 15; i++) {
      for (const dir of ['d', 'data/d']) {
        await attempt(client.call(methods.upload_file, id, `${dir}/up.txt`, Buffer.from('pwned')));
        const listing = (await attempt(client.call(methods.list_files, id, dir))) as { files: string } | null;
        if (listing) expect(hostNames(names(listing))).to.deep.equal([]);
        const tar = (await attempt(client.call(methods.download_file, id, dir))) as Buffer | null;
        if (tar) expect(tar.includes(Buffer.from('host secret'))).to.equal(false);
      }
    }
    for (let i = 0; i < 4; i++) {
      const run = await runToEnd(client, id, 'pass');
      expect(hostNames(run.at(-1)!.files.map((f) => f.name))).to.deep.equal([]);
    }
    expect(await swaps(), 'the kernel swapped folders while the agent worked').to.be.greaterThan(swapsBefore);
    // Both happen (seen: 61 done, 29 refused of 90): the race is really run, and the legitimate path still works through it.
    expect(outcomes.ok, JSON.stringify(outcomes)).to.be.greaterThan(0);
    expect(outcomes.refused, JSON.stringify(outcomes)).to.be.greaterThan(0);
    expect(await target.snapshot()).to.equal(before);
    await client.call(methods.destroy_kernel, id);
    expect(await target.snapshot()).to.equal(before);
  });
});
