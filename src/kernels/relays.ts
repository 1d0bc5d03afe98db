/**
 * KernelRelays keeps the relays of the kernels (src/relay): one runner relay
 * and one terminal relay per kernel, opened on first use and closed with the
 * kernel's container. KernelService owns it; it knows records, not frames.
 */
import type { Logger } from '../log.js';
import { KernelRelay } from '../relay/kernel-relay.js';
import { TerminalRelay } from '../relay/terminal.js';
import { changedOutputFiles, type ImageTraits } from './launch.js';

/** What a relay is opened from. */
export interface RelayTarget {
  id: string;
  ports: number[];
  scratchDir: string;
  traits: ImageTraits;
}

export class KernelRelays {
  private readonly relays = new Map<string, KernelRelay>();
  private readonly terminals = new Map<string, TerminalRelay>();

  constructor(
    private readonly o: {
      kernelHost: string;
      log: Logger;
      /** The exec_timeout setting (0: the image's label). */
      execTimeoutSec(): number;
      /** A run exceeded the exec timeout: the kernel is to be destroyed. */
      onExecTimeout(id: string, log: Logger): void;
    },
  ) {}

  /** The relay to a kernel's runner, opened on first use. */
  relay(rec: RelayTarget): KernelRelay {
    let relay = this.relays.get(rec.id);
    if (!relay) {
      relay = new KernelRelay({ host: this.o.kernelHost, replInPort: rec.ports[0]!, replOutPort: rec.ports[1]!, ...this.options(rec) });
      this.relays.set(rec.id, relay);
    }
    return relay;
  }

  /** Makes an open relay to a kernel's runner (a claimed pooled container's) the kernel's. */
  adopt(rec: RelayTarget, relay: KernelRelay): void {
    this.relays.get(rec.id)?.close();
    relay.rebind(this.options(rec));
    this.relays.set(rec.id, relay);
  }

  private options(rec: RelayTarget) {
    const log = this.o.log.child({ kernelId: rec.id, component: 'relay' });
    return {
      log,
      execTimeoutSec: this.o.execTimeoutSec() || rec.traits.execTimeoutSec,
      outputFiles: (since: number) => changedOutputFiles(rec.scratchDir, since),
      onExecTimeout: () => this.o.onExecTimeout(rec.id, log),
    };
  }

  /** The relay to a kernel's terminal, opened once the runner answers. */
  async terminal(rec: RelayTarget): Promise<TerminalRelay> {
    let t = this.terminals.get(rec.id);
    if (!t) {
      // Docker's proxy accepts connections before the runner listens, and a PUB drops what it sends meanwhile.
      await this.relay(rec).ping();
      t = this.terminals.get(rec.id);
      if (t) return t;
      t = new TerminalRelay(this.o.kernelHost, rec.ports[2]!, rec.ports[3]!, this.o.log.child({ kernelId: rec.id, component: 'terminal' }));
      this.terminals.set(rec.id, t);
    }
    return t;
  }

  /** Closes both relays of a kernel. */
  close(id: string): void {
    this.relays.get(id)?.close();
    this.relays.delete(id);
    this.terminals.get(id)?.close();
    this.terminals.delete(id);
  }

  /**
   * Closes every relay (the agent stops; its kernels keep running). A relay
   * left open would keep reconnecting to the kernel's published ports, and
   * once Docker hands those ports to another container it would take a share
   * of that runner's output.
   */
  closeAll(): void {
    for (const id of new Set([...this.relays.keys(), ...this.terminals.keys()])) this.close(id);
  }
}
