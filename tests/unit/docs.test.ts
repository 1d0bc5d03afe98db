/**
 * The manual (docs/): its reference tables are written from the code's
 * declarations by docs/generate.ts and checked in, so a setting, method,
 * event or metric added to the code without `npm run docs:gen` fails here.
 * The manual itself must build with `sphinx-build -W` (Debian's
 * python3-sphinx, which deploy/dev/prepare.sh installs for the tests) and the
 * client library's API reference with TypeDoc (a missing doc comment fails).
 * Both build into a temporary folder, never into docs/_build.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { DOCS_DIR, generate, stale, text } from '../../docs/generate.js';
import { SETTINGS } from '../../src/config/setting-table.js';
import { POOL_SETTINGS } from '../../src/pool/settings.js';
import { methods } from '../../src/rpc/methods.js';
import { modernMethods } from '../../src/rpc/modern-methods.js';
import { AGENT_EVENTS, MODERN_EVENTS } from '../../src/events/catalogue.js';
import { AGENT_COMMAND_FLAGS, AGENT_FLAGS, AGENTCTL_COMMAND_FLAGS, AGENTCTL_FLAGS } from '../../src/cli/flags.js';
import { REPO_ROOT } from '../helpers/env.js';

const run = promisify(execFile);

describe('docs', () => {
  let out: string;
  before(async () => {
    out = await fs.mkdtemp(path.join(os.tmpdir(), 'docs-test-'));
  });
  after(async () => {
    await fs.rm(out, { recursive: true, force: true });
  });

  it('has the reference tables the code produces now (npm run docs:gen rewrites them)', async () => {
    const files = await stale();
    expect(files, `differ from the code: ${files.join(', ')}; run npm run docs:gen`).to.deep.equal([]);
  });

  it('notices a checked-in table that no longer matches the code', async () => {
    const copy = path.join(out, 'stale');
    await fs.mkdir(path.join(copy, 'reference'), { recursive: true });
    for (const [file, content] of generate()) await fs.writeFile(path.join(copy, file), content);
    expect(await stale(copy)).to.deep.equal([]);
    const settings = path.join(copy, 'reference/settings.rst');
    await fs.writeFile(settings, (await fs.readFile(settings, 'utf8')).replace('``heartbeat_interval``', '``heartbeat_every``'));
    await fs.rm(path.join(copy, 'reference/metrics.rst'));
    expect(await stale(copy)).to.deep.equal(['reference/settings.rst', 'reference/metrics.rst']);
  });

  it('lists every flag, setting, pool key, method, event and metric', () => {
    const pages = generate();
    const page = (name: string) => pages.get(`reference/${name}.rst`)!;
    const commandFlags = [...Object.values(AGENT_COMMAND_FLAGS), ...Object.values(AGENTCTL_COMMAND_FLAGS)].flat();
    for (const f of [...AGENT_FLAGS, ...AGENTCTL_FLAGS, ...commandFlags]) expect(page('flags')).to.include(`\`\`--${f.name}\`\``);
    expect(page('flags')).to.include('``agentctl run``').and.include('``AGENTCTL_CPU``').and.include('``--file``, ``-f``');
    expect(page('flags')).to.include('``BACKEND_ETCD_ADDR``').and.include('``AGENTCTL_ETCD_ADDR``');
    for (const s of SETTINGS) expect(page('settings'), s.key).to.include(`\`\`${s.key}\`\``).and.include(text(s.doc));
    for (const s of POOL_SETTINGS) expect(page('settings'), s.key).to.include(`\`\`${s.key}\`\``);
    for (const m of Object.values(methods)) expect(page('methods'), m.name).to.include(`\`\`${m.name}\`\``);
    for (const m of Object.values(modernMethods)) expect(page('modern-methods'), m.name).to.include(`\`\`${m.name}\`\``);
    for (const e of AGENT_EVENTS) expect(page('events'), e.name).to.include(`\`\`${e.name}\`\``);
    for (const e of MODERN_EVENTS) expect(page('events'), e.name).to.include(`\`\`${e.name}\`\``);
    for (const n of ['compute_agent_pool_containers', 'compute_agent_kernels', 'compute_agent_slots', 'compute_agent_gpu_allocated'])
      expect(page('metrics')).to.include(`\`\`${n}\`\``);
  });

  it('escapes plain text so that nothing in it reads as markup', () => {
    expect(text('a *b* `c` |d| e_ f_g \\')).to.equal('a \\*b\\* \\`c\\` \\|d\\| e\\_ f_g \\\\');
    expect(text('the agent, tcp://HOST:PORT, or *')).to.equal('the agent, ``tcp://HOST:PORT``, or \\*');
  });

  it('builds the manual with sphinx-build -W (warnings are errors)', async function () {
    this.timeout(120_000);
    try {
      await run('sphinx-build', ['-W', '--keep-going', '-q', '-E', '-b', 'html', DOCS_DIR, path.join(out, 'html')], { cwd: REPO_ROOT });
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new Error(
        `sphinx-build failed (install Debian's python3-sphinx: deploy/dev/prepare.sh does with PREPARE_TESTS=1): ${e.stderr || e.message}`,
        { cause: err },
      );
    }
    expect((await fs.readdir(path.join(out, 'html'))).filter((f) => f.endsWith('.html'))).to.include.members([
      'index.html',
      'configuration.html',
    ]);
    // The chapters link to each other as files (so that the links work on a code host too): each link must reach a page and its section.
    const broken: string[] = [];
    const pages = (await fs.readdir(path.join(out, 'html'), { recursive: true })).filter((f) => f.endsWith('.html'));
    for (const page of pages) {
      const html = await fs.readFile(path.join(out, 'html', page), 'utf8');
      for (const m of html.matchAll(/class="reference internal" href="([^"]*)"|class="reference external" href="((?![a-z]+:)[^"]*)"/g)) {
        const href = m[1] ?? m[2]!;
        const [file, anchor] = href.split('#') as [string, string | undefined];
        if (file.startsWith('api/') || file === '') continue;
        const target = path.join(out, 'html', path.dirname(page), file);
        const body = await fs.readFile(target, 'utf8').catch(() => null);
        if (body === null || (anchor && !body.includes(`id="${anchor}"`))) broken.push(`${page} -> ${href}`);
      }
    }
    expect(broken, broken.join('\n')).to.deep.equal([]);
  });

  it('builds the API reference of the client library with TypeDoc (every export documented)', async function () {
    this.timeout(120_000);
    const bin = path.join(REPO_ROOT, 'node_modules/.bin/typedoc');
    try {
      await run(bin, ['--options', path.join(REPO_ROOT, 'typedoc.json'), '--out', path.join(out, 'api'), '--logLevel', 'Warn'], {
        cwd: REPO_ROOT,
      });
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string; message: string };
      const said = `${e.stdout ?? ''}${e.stderr ?? ''}`;
      throw new Error(`typedoc failed: ${said || e.message}`, { cause: err });
    }
    const classes = await fs.readdir(path.join(out, 'api/classes'));
    expect(classes).to.include.members([
      'AgentApi.html',
      'AgentClient.html',
      'EventReceiver.html',
      'RemoteError.html',
      'RpcTimeoutError.html',
    ]);
  });
});
