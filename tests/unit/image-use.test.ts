/** The book of images' last uses (src/images/image-use.ts): kept across restarts, forgiving of a broken file. */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { ImageUseBook } from '../../src/images/image-use.js';
import { silentLogger } from '../../src/log.js';
import { onCleanup } from '../helpers/env.js';

async function tempDir(): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'image-use-'));
  onCleanup(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

describe('image use book', () => {
  it('keeps the latest use of each name across a restart, and forgets what it is told', async () => {
    const dir = await tempDir();
    const book = new ImageUseBook(dir, silentLogger());
    await book.load();
    book.touch(['x:1', 'y:1'], 1000);
    book.touch(['x:1'], 3000);
    book.touch(['y:1'], 500); // an older use never moves a name back
    book.touch(['z:1'], 2000);
    book.forget(['z:1']);
    await book.flush();
    const again = new ImageUseBook(dir, silentLogger());
    await again.load();
    expect([again.lastUse('x:1'), again.lastUse('y:1'), again.lastUse('z:1')]).to.deep.equal([3000, 1000, null]);
    expect((await fs.stat(book.file)).mode & 0o777).to.equal(0o600);
    expect((await fs.readdir(dir)).sort()).to.deep.equal(['.image-use.json']); // no temporary file left
  });

  it('starts empty from a file that is not JSON or not a map, and takes only numbers from it', async () => {
    const dir = await tempDir();
    const file = path.join(dir, '.image-use.json');
    for (const text of ['{not json', '[1,2]', 'null']) {
      await fs.writeFile(file, text);
      const book = new ImageUseBook(dir, silentLogger());
      await book.load();
      expect(book.lastUse('x:1'), text).to.equal(null);
    }
    await fs.writeFile(file, JSON.stringify({ 'a:1': 5, 'b:1': 'soon', 'c:1': -1, 'd:1': null }));
    const book = new ImageUseBook(dir, silentLogger());
    await book.load();
    expect(['a:1', 'b:1', 'c:1', 'd:1'].map((n) => book.lastUse(n))).to.deep.equal([5, null, null, null]);
  });
});
