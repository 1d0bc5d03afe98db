/** The host port range (src/ports/range.ts) and the service-port label (src/containers/service-ports.ts), with a hand-driven clock. */
import { expect } from 'chai';
import { HostPortRange } from '../../src/ports/range.js';
import { parseServicePorts, servicePortsInfo } from '../../src/containers/service-ports.js';
import { compileSettings } from '../../src/config/settings.js';
import { NoResourcesError, ParametersError } from '../../src/errors.js';

describe('host port range', () => {
  let now = 1_000_000;
  const clock = () => now;
  const none = () => false;
  const make = (lo: number, hi: number, cooldownSec: number) => {
    const s = { lo, hi, cooldownSec };
    return { r: new HostPortRange(() => s, clock), s };
  };

  it('gives ports out first in first out and not again within the cool-down', async () => {
    const { r } = make(30000, 30011, 60);
    const a = await r.take(4, 'a', none);
    expect(a).to.deep.equal([30000, 30001, 30002, 30003]);
    r.release('a');
    const b = await r.take(4, 'b', none);
    expect(b).to.deep.equal([30004, 30005, 30006, 30007]); // never used ports come first
    r.release('b');
    const c = await r.take(4, 'c', none);
    expect(c).to.deep.equal([30008, 30009, 30010, 30011]);
    r.release('c');
    now += 30_000; // a's ports are still cooling down
    const err = await r.take(4, 'd', none).catch((e: unknown) => e);
    expect(err).to.be.instanceOf(NoResourcesError);
    expect(String((err as Error).message)).to.match(
      /needs 4, the range 30000-30011 has 0 free \(12 cooling down.*widen container_port_range/,
    );
    expect(r.stats()).to.include({ held: 0, ready: 0, cooling: 12 });
    now += 30_000;
    expect(await r.take(4, 'd', none)).to.deep.equal([30000, 30001, 30002, 30003]); // the oldest release first
  });

  it('fails a take with too few free ports cleanly, taking nothing', async () => {
    const { r } = make(30000, 30005, 0);
    await r.take(4, 'a', none);
    const before = r.stats();
    await r.take(4, 'b', none).then(
      () => expect.fail('should fail'),
      (e: unknown) => expect(e).to.be.instanceOf(NoResourcesError),
    );
    expect(r.stats()).to.deep.equal(before);
    expect(r.portsOf('b')).to.deep.equal([]);
    expect(await r.take(2, 'c', none)).to.deep.equal([30004, 30005]); // the ports the failed take looked at are back in line
  });

  it('skips a port another program holds and tries it again later', async () => {
    const { r } = make(30000, 30007, 0);
    const held = new Set([30001]);
    expect(await r.take(4, 'a', (p) => held.has(p))).to.deep.equal([30000, 30002, 30003, 30004]);
    held.clear();
    expect(await r.take(3, 'b', () => false)).to.deep.equal([30005, 30006, 30007]);
    expect(await r.take(1, 'c', () => false)).to.deep.equal([30001]);
  });

  it('never gives one port to two concurrent takes', async () => {
    const { r } = make(30000, 30011, 0);
    const slow = () => new Promise<boolean>((res) => setImmediate(() => res(false)));
    const got = await Promise.all([r.take(4, 'a', slow), r.take(4, 'b', slow), r.take(4, 'c', slow)]);
    expect(new Set(got.flat()).size).to.equal(12);
  });

  it('takes back adopted ports, moves them from a token to a container, and follows a changed range', async () => {
    const { r, s } = make(30000, 30007, 0);
    r.adopt('old', [30002, 30003, 29000]);
    expect(await r.take(4, 'tok', none)).to.deep.equal([30000, 30001, 30004, 30005]);
    r.transfer('tok', 'cid');
    expect(r.portsOf('cid')).to.deep.equal([30000, 30001, 30004, 30005]);
    s.hi = 30009; // widened
    expect(await r.take(4, 'x', none)).to.deep.equal([30006, 30007, 30008, 30009]);
    r.release('old'); // 29000 is outside the range: not given out
    expect(r.stats()).to.include({ size: 10, held: 8, ready: 2 });
  });

  it('gives back one port of its holder (release_port), refusing a port another holds and ignoring a free one', async () => {
    const { r } = make(30000, 30003, 0);
    const [p1, p2] = [...(await r.take(1, 'assign_port', none)), ...(await r.take(1, 'assign_port', none))];
    const kernel = await r.take(2, 'c0ffee0123456789', none);
    expect(() => r.releaseOne('assign_port', kernel[0]!)).to.throw(
      ParametersError,
      /port 30002 was not given out by assign_port: container c0ffee012345 holds it/,
    );
    expect(r.releaseOne('assign_port', p1!)).to.equal(true);
    expect(r.releaseOne('assign_port', p1!)).to.equal(false);
    expect(r.portsOf('assign_port')).to.deep.equal([p2]);
    expect(r.stats()).to.include({ held: 3, ready: 1 });
    expect(await r.take(1, 'next', none)).to.deep.equal([p1]);
  });

  it('reads container_port_range and port_reuse_cooldown, refusing a bad range', () => {
    const ok = compileSettings(
      { container_port_range: ' 31000 - 31011 ', port_reuse_cooldown: '5' },
      {},
      { cluster: 'config/agent/', node: 'n/' },
    );
    expect(ok.settings).to.include({ containerPortRange: '31000-31011', portReuseCooldownSec: 5 });
    for (const bad of ['80-90', '30000-30002', '31000', '40000-70000', 'a-b']) {
      const r = compileSettings({ container_port_range: bad }, {}, { cluster: 'config/agent/', node: 'n/' });
      expect(JSON.stringify(r.problems), bad).to.match(/container_port_range/);
      expect(r.settings.containerPortRange, bad).to.equal('30000-31000');
    }
  });
});

describe('service-port label', () => {
  it('reads name:protocol:port lists, the ai.backend label winning over io.sorna', () => {
    expect(parseServicePorts({})).to.deep.equal({ ok: true, services: [] });
    expect(
      parseServicePorts({ 'io.sorna.service-ports': 'a:tcp:9000', 'ai.backend.service-ports': 'jupyter:http:8080, term:pty:7681' }),
    ).to.deep.equal({
      ok: true,
      services: [
        { name: 'jupyter', protocol: 'http', port: 8080 },
        { name: 'term', protocol: 'pty', port: 7681 },
      ],
    });
    expect(parseServicePorts({ 'io.sorna.service-ports': 'a:tcp:9000' })).to.deep.equal({
      ok: true,
      services: [{ name: 'a', protocol: 'tcp', port: 9000 }],
    });
  });

  it('refuses a bad label, naming it and what is wrong', () => {
    const cases: Array<[string, RegExp]> = [
      ['jupyter:http', /not name:protocol:port/],
      ['jupyter:udp:8080', /protocol "udp"/],
      ['jupyter:http:80', /not an integer in 1025..65535/],
      ['jupyter:http:2001', /runner's ports 2000-2003/],
      ['a:http:8080,a:tcp:8081', /name a appears twice/],
      ['a:http:8080,b:tcp:8080', /port 8080 appears twice/],
      ['bad name:http:8080', /not a service name/],
    ];
    for (const [label, why] of cases) {
      const r = parseServicePorts({ 'ai.backend.service-ports': label });
      expect(r.ok, label).to.equal(false);
      if (!r.ok) {
        expect(r.error).to.contain('ai.backend.service-ports');
        expect(r.error).to.match(why);
      }
    }
  });

  it('puts the host port of each app in the kernel info', () => {
    expect(servicePortsInfo([{ name: 'jupyter', protocol: 'http', port: 8080 }], { 2000: 30000, 8080: 30004 })).to.deep.equal([
      { name: 'jupyter', protocol: 'http', container_port: 8080, host_port: 30004 },
    ]);
  });
});
