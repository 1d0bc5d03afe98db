/**
 * The firewall plan (src/containers/firewall.ts): chain names that fit
 * iptables and name the agent, and rules that drop what a kernel must not
 * reach while letting replies through.
 */
import { expect } from 'chai';
import { chainId, firewallPlan } from '../../src/containers/firewall.js';
import { kernelBridgeName, kernelNetworkName } from '../../src/containers/kernel-network.js';

describe('firewall plan', () => {
  it('names chains with the agent id, within the 28 characters iptables allows, telling long ids apart', () => {
    expect(firewallPlan('i-node1', 'cak-x', 'allow').map((c) => c.chain)).to.deep.equal([
      'CA-i-node1-PRE',
      'CA-i-node1-IN',
      'CA-i-node1-FWD',
    ]);
    const long1 = 'i-a-very-long-agent-id-of-some-node-0001';
    const long2 = 'i-a-very-long-agent-id-of-some-node-0002';
    expect(chainId(long1)).to.not.equal(chainId(long2));
    for (const c of firewallPlan(long1, 'cak-x', 'deny')) expect(c.chain.length).to.be.at.most(28);
    expect(chainId(long1).startsWith('i-a-very-lon')).to.equal(true);
  });

  it('gives each agent its own bridge name of at most 15 characters and a network named with its id', () => {
    expect(kernelBridgeName('i-a')).to.match(/^cak-[0-9a-f]{11}$/);
    expect(kernelBridgeName('i-a')).to.not.equal(kernelBridgeName('i-b'));
    expect(kernelNetworkName('i-a')).to.equal('compute-agent.i-a');
  });

  it('lets replies through first, drops kernel to kernel and other networks, and drops egress only when denied', () => {
    const [pre, input, allow] = firewallPlan('i-1', 'cak-1', 'allow');
    expect(pre!.rules[0]).to.include('ESTABLISHED,RELATED');
    expect(pre!.rules[1]).to.deep.equal(['-i', 'cak-1', '-m', 'addrtype', '--dst-type', 'LOCAL', '-j', 'DROP']);
    expect(pre!.rules[2]).to.deep.equal(['-i', 'cas-+', '-m', 'addrtype', '--dst-type', 'LOCAL', '-j', 'DROP']);
    expect(input!.rules.slice(1)).to.deep.equal([
      ['-i', 'cak-1', '-j', 'DROP'],
      ['-i', 'cas-+', '-j', 'DROP'],
    ]);
    expect(allow!.rules).to.deep.include(['-i', 'cak-1', '-o', 'cak-1', '-j', 'DROP']);
    expect(allow!.rules).to.deep.include(['-i', 'docker0', '-o', 'cak-1', '-j', 'DROP']);
    expect(allow!.rules).to.not.deep.include(['-i', 'cak-1', '-j', 'DROP']);
    expect(allow!.rules).to.deep.include(['-i', 'cak-1', '-o', 'cas-+', '-j', 'DROP']);
    const deny = firewallPlan('i-1', 'cak-1', 'deny')[2]!;
    expect(deny.rules).to.deep.include(['-i', 'cak-1', '-j', 'DROP']);
    expect(deny.rules.at(-1)).to.deep.equal(['-i', 'cas-+', '-j', 'DROP']);
    // Every hook names this agent's bridge or chain: nothing else of the firewall is touched.
    for (const c of [pre!, input!, allow!]) expect(c.hook.join(' ')).to.match(/cak-1|CA-i-1-/);
  });

  it('lets session bridges through only within one bridge: bridged traffic before the drops, routed traffic between them dropped', () => {
    const fwd = firewallPlan('i-1', 'cak-1', 'allow')[2]!.rules.map((r) => r.join(' '));
    const bridged = fwd.indexOf('-i cas-+ -m physdev --physdev-is-bridged -j RETURN');
    expect(bridged).to.be.greaterThan(0);
    for (const o of ['cas-+', 'cak-+', 'docker0', 'br-+']) {
      expect(fwd.indexOf(`-i cas-+ -o ${o} -j DROP`), `session to ${o}`).to.be.greaterThan(bridged);
      expect(fwd.indexOf(`-i ${o} -o cas-+ -j DROP`), `${o} to session`).to.be.greaterThan(bridged);
    }
  });

  it("drops what kernels send to Docker Swarm's ports on any host with egress allowed, after a session's own traffic", () => {
    const fwd = firewallPlan('i-1', 'cak-1', 'allow')[2]!.rules.map((r) => r.join(' '));
    const bridged = fwd.indexOf('-i cas-+ -m physdev --physdev-is-bridged -j RETURN');
    for (const from of ['cak-1', 'cas-+'])
      for (const [proto, port] of [
        ['udp', 4789],
        ['tcp', 2377],
        ['tcp', 7946],
        ['udp', 7946],
      ] as const) {
        const at = fwd.indexOf(`-i ${from} -p ${proto} -m ${proto} --dport ${port} -j DROP`);
        expect(at, `${from} ${proto}/${port}`).to.be.greaterThan(-1);
        if (from === 'cas-+') expect(at, 'within a session every port passes').to.be.greaterThan(bridged);
      }
    // with egress denied everything from kernels is dropped already: no port rules
    expect(firewallPlan('i-1', 'cak-1', 'deny')[2]!.rules.some((r) => r.includes('--dport'))).to.equal(false);
  });
});
