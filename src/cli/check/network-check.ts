/**
 * The `agent check` entry for kernel isolation (docs/security.rst, "Kernel
 * networks"): whether the firewall chains that keep kernels apart can be
 * installed here (iptables runs, bridged traffic passes it), whether this
 * agent's chains are in place now.
 */
import { errorMessage } from '../../errors.js';
import { iptablesVersion } from '../../adapters/iptables.js';
import { firewallPlan, missingChains } from '../../containers/firewall.js';
import { kernelBridgeName, requireBridgeFilter } from '../../containers/kernel-network.js';
import type { Check } from './types.js';

const FIX = 'run the agent as root on a host with iptables and br_netfilter (modprobe br_netfilter), or set kernel_isolation off';

/** The check. */
export const NETWORK_CHECK: Check = {
  name: 'kernel isolation',
  fix: FIX,
  async run({ options, settings }) {
    const s = await settings().then(
      (c) => c.settings,
      () => null,
    );
    const isolation = s?.kernelIsolation ?? 'on';
    // The warning that it is off is the security settings check's (src/config/security.ts).
    if (isolation === 'off') return { ok: true, detail: 'kernel_isolation is off: no firewall chains are installed' };
    let version: string;
    try {
      version = await iptablesVersion();
      await requireBridgeFilter();
    } catch (err) {
      return { ok: false, detail: `the chains cannot be installed: ${errorMessage(err)}; the agent refuses to start`, fix: FIX };
    }
    const plan = firewallPlan(options.agentId, kernelBridgeName(options.agentId), s?.kernelEgress ?? 'allow');
    const missing = await missingChains(plan);
    const chains = plan.map((c) => `${c.table}/${c.chain}`).join(', ');
    const now =
      missing.length === 0
        ? `its chains are in place (${chains})`
        : missing.length === plan.length
          ? `its chains (${chains}) are installed when the agent starts`
          : `some of its chains are missing (${missing.join(', ')}): the next start rebuilds them`;
    return { ok: true, detail: `${version} can keep kernels apart; kernel_egress ${s?.kernelEgress ?? 'allow'}; ${now}` };
  },
};
