/**
 * What this node offers: the slot figures of the heartbeat (cores, memory in
 * MiB) and the address the manager reaches the agent at.
 */
import os from 'node:os';

/** NodeResources are the node's capacity as the heartbeat reports it. */
export interface NodeResources {
  cpuSlots: number;
  memSlotsMiB: number;
  gpuSlots: number;
}

/** Reads the node's capacity: the cores this process may run on, and total memory. */
export function detectResources(): NodeResources {
  return {
    cpuSlots: os.availableParallelism(),
    memSlotsMiB: Math.floor(os.totalmem() / (1024 * 1024)),
    gpuSlots: 0,
  };
}

/** The first non-loopback IPv4 address of the node, or 127.0.0.1 when it has none. */
export function detectHostAddress(): string {
  for (const addrs of Object.values(os.networkInterfaces())) {
    for (const a of addrs ?? []) {
      if (a.family === 'IPv4' && !a.internal) return a.address;
    }
  }
  return '127.0.0.1';
}
