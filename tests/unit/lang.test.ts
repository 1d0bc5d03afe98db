/** One lang syntax and one resolution (src/config/lang.ts): create, the allow list, prepull, pool/images and pull_image take and refuse the same names. */
import { expect } from 'chai';
import Docker from 'dockerode';
import { checkLang, langName, langOfImage, resolveImage } from '../../src/config/lang.js';
import { compileSettings, defaultSettings } from '../../src/config/settings.js';
import { compilePoolSettings } from '../../src/pool/settings.js';
import { parseKernelConfig } from '../../src/containers/spec.js';
import { ImageService } from '../../src/images/service.js';
import { DockerImages } from '../../src/adapters/docker-images.js';
import { silentLogger } from '../../src/log.js';
import { ParametersError } from '../../src/errors.js';

const PREFIX = 'lablup/kernel-';
const FULL = '127.0.0.1:5000/lablup/kernel-python:3-debian';
const GOOD = ['python:3-debian', 'python', 'lablup/python:3.9', FULL];
const BAD = ['/etc/passwd', 'a//b:1', 'a/../b:1', 'UPPER:1', 'python:-bad', `python@sha256:${'a'.repeat(64)}`, 'a:b:c', 'x'.repeat(400)];

/** Whether each path takes `lang`, with the allow list holding FULL (the example). */
function paths(lang: string): Record<string, boolean> {
  const settings = { ...defaultSettings(), imagePrefix: PREFIX, imageAllowList: [FULL] };
  const images = new ImageService({
    images: new DockerImages(new Docker()), // resolve() asks Docker nothing
    log: silentLogger(),
    emit: () => undefined,
    settings: () => settings,
    etcdGet: () => Promise.resolve(null),
    kernels: () => [],
    pool: () => null,
    scratchRoot: '/nonexistent', // the book of last uses is never read: nothing starts
    agentId: 'i-unit',
  });
  const takes = (f: () => unknown) => {
    try {
      f();
      return true;
    } catch {
      return false;
    }
  };
  const pool = compilePoolSettings(
    { 'pool/types': '[{"name":"small","cpu":1,"memory":64}]', 'pool/images': JSON.stringify({ [lang]: { small: 1 } }) },
    {},
    { cluster: 'c/', node: 'n/' },
  );
  return {
    create: takes(() => parseKernelConfig({ lang }, PREFIX, '/mnt', [FULL])),
    pullImage: takes(() => images.resolve(lang)),
    allowList: compileSettings({ image_allow_list: lang }, {}).problems.length === 0,
    prepull: compileSettings({ prepull: lang }, {}).problems.length === 0,
    poolImages: pool.problems.length === 0,
  };
}

describe('langs', () => {
  it('are taken by every path alike: create, pull_image, image_allow_list, prepull and pool/images', () => {
    for (const lang of GOOD)
      expect(paths(lang), lang).to.deep.equal({ create: true, pullImage: true, allowList: true, prepull: true, poolImages: true });
    for (const lang of BAD)
      expect(paths(lang), lang).to.deep.equal({ create: false, pullImage: false, allowList: false, prepull: false, poolImages: false });
  });

  it('resolve a registry host only from the allow list, with errors that say what to do', () => {
    expect(resolveImage(FULL, PREFIX, [FULL])).to.equal(FULL);
    expect(() => resolveImage('127.0.0.1:5000/x:1', PREFIX, [])).to.throw(/makes no image name.*image_allow_list/);
    expect(() => parseKernelConfig({ lang: '127.0.0.1:5000/x:1' }, PREFIX, '/mnt')).to.throw(
      ParametersError,
      /config lang .*image_allow_list/,
    );
    expect(() => checkLang('/etc/passwd')).to.throw(/lang must be an image "name:tag".*path segment/);
    expect(() => checkLang('')).to.throw(/not 1 to 384/); // an empty list setting is the empty list, not an empty lang
    expect(() => checkLang(`python@sha256:${'a'.repeat(64)}`)).to.throw(/names a digest/);
  });

  it('map back from image names, and name containers by the name without the tag', () => {
    expect(langOfImage('lablup/kernel-python:3', PREFIX, [])).to.equal('python:3');
    expect(langOfImage('docker.io/lablup/kernel-python:3', PREFIX, [])).to.equal('python:3');
    expect(langOfImage(FULL, PREFIX, [FULL])).to.equal(FULL);
    expect(langOfImage('busybox:1', PREFIX, [])).to.equal(null);
    expect(langOfImage('lablup/kernel-python:3', '', [])).to.equal(null);
    expect(langName('python:3-debian')).to.equal('python');
    expect(langName(FULL)).to.equal('127.0.0.1-5000-lablup-kernel-python');
  });
});

describe('setting parsers', () => {
  it("read booleans one way in the agent's settings and the pool's, refusing an empty value", () => {
    for (const [raw, want] of [
      ['yes', true],
      ['ON', true],
      ['1', true],
      ['false', false],
      ['off', false],
      ['0', false],
    ] as const) {
      expect(compileSettings({ prepull_before_running: raw }, {}).settings.prepullBeforeRunning, raw).to.equal(want);
      expect(compilePoolSettings({ 'pool/freeze': raw }, {}, { cluster: 'c/', node: 'n/' }).settings.freeze, raw).to.equal(want);
    }
    const agent = compileSettings({ kernel_no_new_privileges: '' }, {});
    expect(agent.settings.kernelNoNewPrivileges).to.equal(true); // the default stays
    expect(agent.problems.map((p) => p.source)).to.deep.equal(['config/agent/kernel_no_new_privileges']);
    const pool = compilePoolSettings({ 'pool/freeze': '' }, {}, { cluster: 'c/', node: 'n/' });
    expect(pool.problems.map((p) => p.source)).to.deep.equal(['c/pool/freeze']);
  });
});
