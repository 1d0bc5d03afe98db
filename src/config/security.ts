/**
 * The protections of the agent and its kernels that the settings turn off,
 * for `agent check`: each finding names the setting, says what is lost and
 * how to turn the protection back on. A pure function of the settings.
 */
import type { ContainerSecurity } from '../adapters/docker.js';
import type { Settings } from './setting-table.js';
import { DEFAULT_KERNEL_CAPABILITIES } from './setting-table-boundaries.js';

/** The lock-down of kernel containers that the settings ask for. */
export function containerSecurity(s: Settings): ContainerSecurity {
  return {
    noNewPrivileges: s.kernelNoNewPrivileges,
    capabilities: s.kernelCapabilities,
    seccomp: s.kernelSeccomp,
    pidsLimit: s.kernelPidsLimit,
    nofileLimit: s.kernelNofileLimit,
    log: { maxBytes: s.kernelLogMaxMiB * 1024 * 1024, maxFiles: s.kernelLogMaxFiles },
  };
}

/** One protection that is off. */
export interface SecurityFinding {
  /** The etcd setting (below `config/agent/`) that turns it off. */
  name: string;
  detail: string;
  fix: string;
}

const ANY_ADDRESS = new Set(['0.0.0.0', '::', '[::]']);

/** Lists the protections that `settings` turn off; empty when every one is on. */
export function securityFindings(s: Settings): SecurityFinding[] {
  const out: SecurityFinding[] = [];
  if (!s.rpcKeypairFile) {
    out.push({
      name: 'rpc_keypair_file',
      detail: 'RPC is not authenticated: anyone who reaches the agent port can run code and read kernels',
      fix: "run agent keygen --out FILE, set rpc_keypair_file to FILE and rpc_allowed_keys to the managers' public keys (needs a CURVE-capable manager); until then bind --bind-host to the manager's network only",
    });
  } else if (s.rpcAllowedKeys.length === 0) {
    out.push({
      name: 'rpc_allowed_keys',
      detail: 'no manager key is allowed: every RPC client is refused',
      fix: "list the managers' Z85 public keys",
    });
  }
  if (s.kernelIsolation === 'off') {
    out.push({
      name: 'kernel_isolation',
      detail: 'no firewall chains keep kernels from each other and from the ports of this host',
      fix: 'set kernel_isolation to on (needs iptables and br_netfilter; agent check says whether this host has them)',
    });
  }
  if (!s.kernelNoNewPrivileges) {
    out.push({
      name: 'kernel_no_new_privileges',
      detail: 'setuid programs in kernels can raise privileges',
      fix: 'set kernel_no_new_privileges to true',
    });
  }
  if (s.kernelCapabilities === null) {
    out.push({
      name: 'kernel_capabilities',
      detail: "kernels keep Docker's default capabilities",
      fix: `set kernel_capabilities to ${DEFAULT_KERNEL_CAPABILITIES.join(',')}`,
    });
  } else {
    const extra = s.kernelCapabilities.filter((c) => !DEFAULT_KERNEL_CAPABILITIES.includes(c));
    if (extra.length > 0)
      out.push({
        name: 'kernel_capabilities',
        detail: `kernels keep extra capabilities: ${extra.join(', ')}`,
        fix: `remove them unless an image needs them (default ${DEFAULT_KERNEL_CAPABILITIES.join(',')})`,
      });
  }
  if (s.kernelSeccomp !== 'default') {
    out.push({
      name: 'kernel_seccomp',
      detail: 'kernels run without a seccomp filter: every system call reaches the host kernel',
      fix: 'set kernel_seccomp to default',
    });
  }
  if (s.kernelPidsLimit === 0) {
    out.push({
      name: 'kernel_pids_limit',
      detail: "a fork bomb in a kernel can exhaust the node's process table",
      fix: 'set kernel_pids_limit (default 1024)',
    });
  }
  if (s.kernelNofileLimit === 0) {
    out.push({
      name: 'kernel_nofile_limit',
      detail: "kernels get Docker's default open-files limit",
      fix: 'set kernel_nofile_limit (default 4096)',
    });
  }
  if (ANY_ADDRESS.has(s.kernelPublishAddr)) {
    out.push({
      name: 'kernel_publish_addr',
      detail: 'kernel ports are published on every interface of the node',
      fix: 'leave kernel_publish_addr empty (the kernel host address) or set the manager-facing address',
    });
  }
  if (s.imagePrefix === '' && s.imageAllowList.length === 0) {
    out.push({
      name: 'image_prefix',
      detail: 'image_prefix is empty: no kernel can be created (the agent refuses unprefixed images)',
      fix: 'set image_prefix, or list images in image_allow_list',
    });
  }
  return out;
}
