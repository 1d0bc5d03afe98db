/**
 * Scratch-home file operations on a real temporary directory: round trips,
 * and every way out of the home refused with nothing written outside it.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import tar from 'tar-stream';
import { FileTooLargeError, InvalidPathError, KernelFileNotFoundError } from '../../src/errors.js';
import { DEFAULT_FILE_LIMITS, ScratchFiles, type FileLimits } from '../../src/kernels/files.js';

interface TarEntry {
  name: string;
  type: string;
  linkname: string | null;
  data: string;
}

/** Decodes an archive with tar-stream, so names and types are checked as a tar reader sees them. */
async function untar(archive: Buffer): Promise<TarEntry[]> {
  const extract = tar.extract();
  const entries: TarEntry[] = [];
  const done = (async () => {
    for await (const entry of extract) {
      const chunks: Buffer[] = [];
      for await (const chunk of entry) chunks.push(chunk as Buffer);
      const h = entry.header;
      entries.push({ name: h.name, type: h.type, linkname: h.linkname ?? null, data: Buffer.concat(chunks).toString() });
    }
  })();
  extract.end(archive);
  await done;
  return entries;
}

/** Resolves to the error a promise rejects with (fails the test if it resolves). */
async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection');
}

describe('scratch files', () => {
  let root: string;
  let home: string;
  let outside: string;
  let files: ScratchFiles;
  const make = (limits: Partial<FileLimits> = {}) => new ScratchFiles(home, { ...DEFAULT_FILE_LIMITS, ...limits });

  /** Everything below `root` except the home, so that a test can prove nothing was written outside. */
  async function outsideSnapshot(): Promise<string[]> {
    const top = (await fs.readdir(root)).filter((e) => e !== 'home');
    const below = (await fs.readdir(outside, { recursive: true })).map((e) => `outside/${e}`);
    return [...top, ...below].sort();
  }

  beforeEach(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'scratch-'));
    home = path.join(root, 'home');
    outside = path.join(root, 'outside');
    await fs.mkdir(home);
    await fs.mkdir(outside);
    await fs.writeFile(path.join(outside, 'secret'), 'top secret');
    files = make();
  });
  afterEach(() => fs.rm(root, { recursive: true, force: true }));

  it('uploads, lists and downloads a tree', async () => {
    await files.upload('hello.txt', Buffer.from('hi'));
    await files.upload('sub/deep/a.bin', Buffer.from([0, 1, 2]));
    await files.upload('/home/work/sub/b.txt', Buffer.from('bee'));
    expect(await fs.readFile(path.join(home, 'sub/deep/a.bin'))).to.deep.equal(Buffer.from([0, 1, 2]));

    const top = await files.list('.');
    expect(top.abspath).to.equal('/home/work');
    expect(top.errors).to.equal('');
    const listed = JSON.parse(top.files) as Array<Record<string, unknown>>;
    // A directory's size depends on the filesystem, so only the file's is checked.
    expect(listed.map((f) => [f.filename, f.mode])).to.deep.equal([
      ['hello.txt', '-rw-r--r--'],
      ['sub', 'drwxr-xr-x'],
    ]);
    expect(listed[0]!.size).to.equal(2);
    for (const key of ['ctime', 'mtime', 'atime'])
      expect(listed[0]![key])
        .to.be.a('number')
        .within(Date.now() / 1000 - 60, Date.now() / 1000 + 60);

    const entries = await untar(await files.download('sub'));
    expect(entries.map((e) => [e.name, e.type, e.data])).to.deep.equal([
      ['sub/', 'directory', ''],
      ['sub/b.txt', 'file', 'bee'],
      ['sub/deep/', 'directory', ''],
      ['sub/deep/a.bin', 'file', '\u0000\u0001\u0002'],
    ]);
    expect((await untar(await files.download('/home/work/sub/b.txt'))).map((e) => e.name)).to.deep.equal(['b.txt']);
    expect((await untar(await files.download('.')))[0]!.name).to.equal('work/');
  });

  it('creates parent directories 0755, owned like the home, and replaces existing files', async function () {
    if (process.getuid?.() !== 0) this.skip();
    await fs.chown(home, 4321, 4322);
    await files.upload('x/y/z.txt', Buffer.from('one'));
    await files.upload('x/y/z.txt', Buffer.from('two'));
    for (const [rel, mode] of [
      ['x', 0o755],
      ['x/y', 0o755],
      ['x/y/z.txt', 0o644],
    ] as const) {
      const st = await fs.stat(path.join(home, rel));
      expect([st.uid, st.gid, st.mode & 0o777], rel).to.deep.equal([4321, 4322, mode]);
    }
    expect(await fs.readFile(path.join(home, 'x/y/z.txt'), 'utf8')).to.equal('two');
    expect((await fs.readdir(path.join(home, 'x/y'))).length, 'no temporary file left').to.equal(1);
  });

  it('refuses paths that leave the home, for every operation', async () => {
    const bad = ['../x', 'a/../../x', '/etc/passwd', '/home/work/../../etc/x', '/home/workx/y', '', 'a\0b', '..'];
    for (const p of bad) {
      const errs = [await rejection(files.upload(p, Buffer.from('x'))), await rejection(files.download(p)), await rejection(files.list(p))];
      for (const err of errs) expect(err, JSON.stringify(p)).to.be.instanceOf(InvalidPathError);
      expect(errs[0]!.message, JSON.stringify(p)).to.include(JSON.stringify(p));
    }
    expect((await rejection(files.upload('/home/work', Buffer.from('x')))).message).to.match(/itself/);
    expect(await fs.readdir(home)).to.deep.equal([]);
    expect(await outsideSnapshot()).to.deep.equal(['outside', 'outside/secret']);
  });

  it('refuses to go through a symlink to / or to a directory outside', async () => {
    await fs.symlink('/', path.join(home, 'rootlink'));
    await fs.symlink(outside, path.join(home, 'out'));
    await fs.symlink('../outside', path.join(home, 'rel'));
    const viaRoot = path.relative('/', outside);
    for (const p of [`rootlink/${viaRoot}/planted`, 'out/planted', 'rel/planted', 'out/new/dir/planted']) {
      const err = await rejection(files.upload(p, Buffer.from('x')));
      expect(err, p).to.be.instanceOf(InvalidPathError);
      expect(err.message, p).to.match(/is a symlink to .*(outside|which leads out of) \/home\/work/);
    }
    for (const p of ['rootlink', 'out', 'rel', `rootlink/${viaRoot}`])
      expect(await rejection(files.list(p)), p).to.be.instanceOf(InvalidPathError);
    for (const p of [`rootlink/${viaRoot}/secret`, 'out/secret', 'rel/secret', 'rootlink/etc/passwd']) {
      expect(await rejection(files.download(p)), p).to.be.instanceOf(InvalidPathError);
    }
    expect(await outsideSnapshot()).to.deep.equal(['outside', 'outside/secret']);
  });

  it('does not follow a symlink at the upload target that points outside', async () => {
    await fs.symlink(path.join(outside, 'secret'), path.join(home, 'victim'));
    await fs.symlink(path.join(outside, 'new'), path.join(home, 'dangling-out'));
    for (const p of ['victim', 'dangling-out'])
      expect(await rejection(files.upload(p, Buffer.from('pwned'))), p).to.be.instanceOf(InvalidPathError);
    expect(await fs.readFile(path.join(outside, 'secret'), 'utf8')).to.equal('top secret');
    expect(await outsideSnapshot()).to.deep.equal(['outside', 'outside/secret']);
    expect((await fs.lstat(path.join(home, 'victim'))).isSymbolicLink()).to.equal(true);
  });

  it('never writes or reads outside while a directory is swapped with a symlink to outside', async () => {
    const d = path.join(home, 'd');
    const parked = path.join(home, 'parked');
    await fs.mkdir(d);
    await fs.writeFile(path.join(d, 'secret'), 'inside');
    let stop = false;
    const tick = () => new Promise((resolve) => setImmediate(resolve));
    const swapper = (async () => {
      while (!stop) {
        try {
          await fs.rename(d, parked);
          await fs.symlink(outside, d);
          await tick();
          await fs.unlink(d);
          await fs.rename(parked, d);
        } catch {
          // An upload made `d` while it was parked: start over from the parked one.
          await fs.rm(d, { recursive: true, force: true }).catch(() => undefined);
          await fs.rename(parked, d).catch(() => undefined);
        }
        await tick();
      }
    })();
    const leaked: string[] = [];
    for (let i = 0; i < 300; i++) {
      await Promise.all([
        files.upload(`d/up${i}`, Buffer.from('x')).catch(() => undefined),
        files.upload(`d/new${i}/x`, Buffer.from('x')).catch(() => undefined),
        files.download('d/secret').then(
          async (a) => leaked.push(...(await untar(a)).map((e) => e.data)),
          () => undefined,
        ),
        files.list('d').then(
          (l) => leaked.push(l.files),
          () => undefined,
        ),
      ]);
    }
    stop = true;
    await swapper;
    expect(leaked.join('\n')).not.to.include('top secret');
    expect(await outsideSnapshot()).to.deep.equal(['outside', 'outside/secret']);
  });

  it('replaces a hard link at the upload target instead of writing through it', async () => {
    await fs.link(path.join(outside, 'secret'), path.join(home, 'hard'));
    await files.upload('hard', Buffer.from('mine'));
    expect(await fs.readFile(path.join(outside, 'secret'), 'utf8')).to.equal('top secret');
    expect(await fs.readFile(path.join(home, 'hard'), 'utf8')).to.equal('mine');
  });

  it('handles dangling symlinks and loops', async () => {
    await fs.symlink('missing.txt', path.join(home, 'dang'));
    await fs.symlink('loop', path.join(home, 'loop'));
    expect((await rejection(files.upload('dang', Buffer.from('x')))).message).to.match(/missing file/);
    expect(await rejection(files.upload('dang/x', Buffer.from('x')))).to.be.instanceOf(KernelFileNotFoundError);
    expect(await rejection(files.list('dang'))).to.be.instanceOf(KernelFileNotFoundError);
    expect((await rejection(files.list('loop'))).message).to.match(/too many levels of symlinks/);
    expect(await rejection(files.upload('loop/x', Buffer.from('x')))).to.be.instanceOf(InvalidPathError);
    expect(await fs.readdir(home)).to.have.members(['dang', 'loop']);
  });

  it('follows symlinks that stay inside the home, read as the container sees them', async () => {
    await fs.mkdir(path.join(home, 'sub'));
    await fs.symlink('sub', path.join(home, 'rel'));
    await fs.symlink('/home/work/sub', path.join(home, 'abs'));
    await files.upload('rel/a.txt', Buffer.from('a'));
    await files.upload('abs/b.txt', Buffer.from('b'));
    expect(await fs.readdir(path.join(home, 'sub'))).to.have.members(['a.txt', 'b.txt']);
    const listed = await files.list('abs');
    expect(listed.abspath).to.equal('/home/work/abs');
    expect(JSON.parse(listed.files).map((f: { filename: string }) => f.filename)).to.deep.equal(['a.txt', 'b.txt']);
    expect((await untar(await files.download('rel/a.txt')))[0]).to.include({ name: 'a.txt', data: 'a' });
  });

  it('stores a symlink in the archive as a link, not its target', async () => {
    await fs.symlink(path.join(outside, 'secret'), path.join(home, 'link'));
    await fs.mkdir(path.join(home, 'd'));
    await fs.symlink('/', path.join(home, 'd', 'root'));
    expect(await untar(await files.download('link'))).to.deep.equal([
      { name: 'link', type: 'symlink', linkname: path.join(outside, 'secret'), data: '' },
    ]);
    const entries = await untar(await files.download('d'));
    expect(entries.map((e) => [e.name, e.type, e.linkname])).to.deep.equal([
      ['d/', 'directory', null],
      ['d/root', 'symlink', '/'],
    ]);
    const listed = JSON.parse((await files.list('.')).files) as Array<{ filename: string; mode: string }>;
    expect(listed.find((f) => f.filename === 'link')!.mode).to.equal('lrwxrwxrwx');
  });

  it('enforces the upload, download and list limits', async () => {
    const small = make({ maxUploadBytes: 10, maxDownloadBytes: 2048, maxListEntries: 2 });
    expect(await rejection(small.upload('big', Buffer.alloc(11)))).to.be.instanceOf(FileTooLargeError);
    expect(await fs.readdir(home)).to.deep.equal([]);
    await small.upload('ok', Buffer.alloc(10));
    await fs.writeFile(path.join(home, 'huge'), Buffer.alloc(4096));
    expect(await rejection(small.download('huge'))).to.be.instanceOf(FileTooLargeError);
    expect(await rejection(small.download('.'))).to.be.instanceOf(FileTooLargeError);
    await fs.writeFile(path.join(home, 'third'), '');
    const listed = await small.list('.');
    expect(JSON.parse(listed.files)).to.have.length(2);
    expect(listed.errors).to.match(/cut at 2 of 3 entries/);
  });

  it('reports missing paths and non-directories with our errors', async () => {
    expect(await rejection(files.list('nope'))).to.be.instanceOf(KernelFileNotFoundError);
    expect(await rejection(files.list('a/b/c'))).to.be.instanceOf(KernelFileNotFoundError);
    expect(await rejection(files.download('nope'))).to.be.instanceOf(KernelFileNotFoundError);
    await files.upload('f', Buffer.from('x'));
    expect((await rejection(files.list('f'))).message).to.match(/not a directory/);
    expect((await rejection(files.upload('f/g', Buffer.from('x')))).message).to.match(/not a directory/);
    await fs.mkdir(path.join(home, 'dir'));
    expect((await rejection(files.upload('dir', Buffer.from('x')))).message).to.match(/is a directory/);
    expect((await files.list('/home/work/dir/')).abspath).to.equal('/home/work/dir');
    const gone = new ScratchFiles(path.join(root, 'no-home'), DEFAULT_FILE_LIMITS);
    expect(await rejection(gone.list('.'))).to.be.instanceOf(KernelFileNotFoundError);
  });

  it("walks a vfolder path in the vfolder's host folder, never out of it, and never into it through the home", async () => {
    const vf = path.join(root, 'vfolder');
    await fs.mkdir(vf);
    await fs.mkdir(path.join(home, 'data')); // the folder the mount hides, on the host
    await fs.writeFile(path.join(home, 'data', 'hidden.txt'), 'hidden');
    await fs.writeFile(path.join(vf, 'v.txt'), 'vee');
    const withVf = new ScratchFiles(home, DEFAULT_FILE_LIMITS, null, [{ name: 'data', hostPath: vf }]);
    await withVf.upload('data/sub/up.txt', Buffer.from('up'));
    expect(await fs.readFile(path.join(vf, 'sub', 'up.txt'), 'utf8')).to.equal('up');
    const listing = await withVf.list('/home/work/data');
    expect(listing.abspath).to.equal('/home/work/data');
    expect((JSON.parse(listing.files) as Array<{ filename: string }>).map((f) => f.filename)).to.deep.equal(['sub', 'v.txt']);
    expect((await untar(await withVf.download('data/v.txt'))).map((e) => [e.name, e.data])).to.deep.equal([['v.txt', 'vee']]);
    expect((await untar(await withVf.download('data'))).map((e) => e.name)).to.include.members(['data/', 'data/v.txt']);
    expect(await rejection(withVf.upload('data', Buffer.from('x')))).to.be.instanceOf(InvalidPathError);

    await fs.symlink(outside, path.join(vf, 'out'));
    await fs.symlink('..', path.join(vf, 'up'));
    await fs.symlink('/home/work/hello', path.join(vf, 'tohome'));
    await fs.symlink('/home/work/data/v.txt', path.join(vf, 'self'));
    await fs.symlink('data', path.join(home, 'tovf'));
    for (const p of ['data/out/secret', 'data/up/x', 'data/tohome/x', 'tovf/v.txt']) {
      const err = await rejection(withVf.download(p));
      expect(err, p).to.be.instanceOf(InvalidPathError);
    }
    expect(await rejection(withVf.upload('data/out/new', Buffer.from('x')))).to.be.instanceOf(InvalidPathError);
    expect(await rejection(withVf.list('tovf'))).to.be.instanceOf(InvalidPathError);
    await withVf.upload('data/self', Buffer.from('replaced')); // a link inside the vfolder to a file in it: the link is replaced
    expect((await fs.lstat(path.join(vf, 'self'))).isFile()).to.equal(true);
    expect(await fs.readFile(path.join(vf, 'v.txt'), 'utf8')).to.equal('vee');
    expect(await fs.readFile(path.join(home, 'data', 'hidden.txt'), 'utf8')).to.equal('hidden');
    expect(await outsideSnapshot()).to.deep.equal(['outside', 'outside/secret', 'vfolder']);
  });
});
