/**
 * AgentApi is the typed client library for managers and tools: one method per
 * RPC of the method table, each with the table's argument and result types,
 * on top of {@link AgentClient} (framing, request ids, timeouts). Failures are
 * typed: {@link RemoteError} for an error reply (its `remoteType` is one of
 * `WireErrors`), {@link RpcTimeoutError} when no reply comes in time.
 */
import { AgentClient, type AgentClientOptions } from './client.js';
import { methods } from './methods.js';
import {
  type ImageRemoval,
  type ImageGcResult,
  type ImageSummary,
  type KernelInfo,
  type KernelStats,
  type KernelSummary,
  type NodeStatsResult,
  type PullSummary,
  type RunResult,
  type ServiceResult,
  type DrainStatus,
} from './results.js';

/** How long the slow calls may take by default: creating or restarting a container, destroying one, resetting a node. */
const SLOW_CALL_MS = 120_000;
/** start_service: above the agent's own bound on the runner's answer (75 s, src/kernels/apps.ts). */
const START_SERVICE_CALL_MS = 90_000;

/** AgentApiOptions are the options of {@link AgentApi}: the client's, plus the timeout of the slow calls. */
export interface AgentApiOptions extends AgentClientOptions {
  /** Timeout of create/restart/destroy/reset and of file transfers, in ms (120 s). */
  slowTimeoutMs?: number;
}

/** ExecuteMode is a mode of {@link AgentApi.execute}. */
export type ExecuteMode = 'query' | 'batch' | 'input' | 'continue';

/** KernelConfig is a kernel's config for create_kernel (docs/wire-contract.rst, "RPC"); other keys are passed through. */
export interface KernelConfig {
  /** `name:tag`; the image is `<image prefix><lang>`. */
  lang: string;
  limits?: { cpu_slot?: number; mem_slot?: number; gpu_slot?: number };
  mounts?: Array<[string, string, string]>;
  environ?: Record<string, string>;
  cpu_set?: number[];
  gpu_set?: number[];
  [key: string]: unknown;
}

/**
 * AgentApi is the typed client of one agent: one method per RPC of the 2018
 * table, with per-call timeouts (10 s by default, 120 s for the slow calls
 * such as createKernel); an error reply rejects with {@link RemoteError}, no
 * reply in time with {@link RpcTimeoutError}.
 */
export class AgentApi {
  /** The underlying client, for calls by name (`callRaw`). */
  readonly client: AgentClient;
  private readonly slowMs: number;

  /** Connects to an agent at e.g. `tcp://127.0.0.1:6001` (in the background: the first call waits for it). */
  constructor(
    /** The agent's RPC endpoint. */
    readonly endpoint: string,
    options: AgentApiOptions = {},
  ) {
    this.client = new AgentClient(endpoint, options);
    this.slowMs = options.slowTimeoutMs ?? SLOW_CALL_MS;
  }

  /** ping: the agent answers with `msg`; checks that it is alive. */
  ping(msg = 'ping'): Promise<string> {
    return this.client.call(methods.ping, msg);
  }

  /** create_kernel: starts a kernel container (idempotent per kernel id) and returns its info. */
  createKernel(kernelId: string, config: KernelConfig): Promise<KernelInfo> {
    return this.client.callWithTimeout(this.slowMs, methods.create_kernel, kernelId, config);
  }

  /** destroy_kernel: stops and removes a kernel and its home, and returns its last stats (null for a kernel the agent does not hold). */
  destroyKernel(kernelId: string, reason?: string): Promise<KernelStats | null> {
    if (reason === undefined) return this.client.callWithTimeout(this.slowMs, methods.destroy_kernel, kernelId);
    return this.client.callWithTimeout(this.slowMs, methods.destroy_kernel, kernelId, reason);
  }

  /** restart_kernel: recreates a kernel's container on the same home and cores, with `config`'s limits and environ. */
  restartKernel(kernelId: string, config: Partial<KernelConfig> = {}): Promise<Omit<KernelInfo, 'id' | 'kernel_host'>> {
    return this.client.callWithTimeout(this.slowMs, methods.restart_kernel, kernelId, config);
  }

  /** One execute call; a result with status `continued` asks for another call with mode `continue`. */
  execute(
    kernelId: string,
    runId: string | null,
    mode: ExecuteMode,
    code: string,
    opts: Record<string, unknown> = {},
    flushTimeoutSec?: number,
    apiVersion = 2,
  ): Promise<RunResult> {
    // The call itself may wait for the flush timeout, so its own timeout is longer.
    const timeoutMs = this.slowMs + (flushTimeoutSec ?? 2) * 1000;
    if (flushTimeoutSec === undefined)
      return this.client.callWithTimeout(timeoutMs, methods.execute, apiVersion, kernelId, runId, mode, code, opts);
    return this.client.callWithTimeout(timeoutMs, methods.execute, apiVersion, kernelId, runId, mode, code, opts, flushTimeoutSec);
  }

  /** ping_kernel: null, or an error when the kernel's runner does not answer. */
  pingKernel(kernelId: string): Promise<null> {
    return this.client.callWithTimeout(this.slowMs, methods.ping_kernel, kernelId);
  }

  /** start_service: the app's start waits for its port, up to the agent's bound (src/kernels/apps.ts). */
  startService(kernelId: string, service: string, opts: Record<string, unknown> = {}): Promise<ServiceResult> {
    return this.client.callWithTimeout(START_SERVICE_CALL_MS, methods.start_service, kernelId, service, opts);
  }

  /** shutdown_service (beyond the 2018 set): stops an app started by start_service. */
  shutdownService(kernelId: string, service: string): Promise<ServiceResult> {
    return this.client.callWithTimeout(this.slowMs, methods.shutdown_service, kernelId, service);
  }

  /** interrupt_kernel: sends SIGINT to the code running in a kernel. */
  interruptKernel(kernelId: string): Promise<null> {
    return this.client.call(methods.interrupt_kernel, kernelId);
  }

  /** get_completions: asks the kernel for completions of `text`. */
  getCompletions(kernelId: string, text: string, opts: Record<string, unknown> = {}): Promise<{ status: string; completions: string[] }> {
    return this.client.call(methods.get_completions, kernelId, text, opts);
  }

  /** get_logs: the end of the kernel container's output (bounded; a first line says when it was cut). */
  getLogs(kernelId: string): Promise<{ logs: string }> {
    return this.client.call(methods.get_logs, kernelId);
  }

  /** upload_file: writes `data` as `filename` in the kernel's home. */
  uploadFile(kernelId: string, filename: string, data: Buffer): Promise<null> {
    return this.client.callWithTimeout(this.slowMs, methods.upload_file, kernelId, filename, data);
  }

  /** A file or folder of the kernel's home as tar bytes. */
  downloadFile(kernelId: string, filepath: string): Promise<Buffer> {
    return this.client.callWithTimeout(this.slowMs, methods.download_file, kernelId, filepath);
  }

  /** A folder of the kernel's home; `files` is parsed from the wire's JSON string. */
  async listFiles(kernelId: string, path: string): Promise<{ files: KernelFileEntry[]; errors: string; abspath: string }> {
    const r = await this.client.call(methods.list_files, kernelId, path);
    return { files: JSON.parse(r.files) as KernelFileEntry[], errors: r.errors, abspath: r.abspath };
  }

  /** list_kernels (beyond the 2018 set): the agent's kernels with their state, cores, memory and apps. */
  listKernels(): Promise<KernelSummary[]> {
    return this.client.call(methods.list_kernels);
  }

  /** The node's CPU, memory and disk figures and each kernel's cgroup figures. */
  nodeStats(): Promise<NodeStatsResult> {
    return this.client.call(methods.get_node_stats);
  }

  /** terminal_write (beyond the 2018 set): sends bytes to the kernel's terminal. */
  terminalWrite(kernelId: string, data: Buffer): Promise<null> {
    return this.client.call(methods.terminal_write, kernelId, data);
  }

  /** Output after `cursor`, waiting up to `waitSec` for some; the call's timeout covers the wait. */
  terminalRead(kernelId: string, cursor: number, waitSec = 0): Promise<{ data: Buffer; cursor: number; dropped: number }> {
    return this.client.callWithTimeout(waitSec * 1000 + 10_000, methods.terminal_read, kernelId, cursor, waitSec);
  }

  /** terminal_resize (beyond the 2018 set): sets the kernel terminal's size. */
  terminalResize(kernelId: string, rows: number, cols: number): Promise<null> {
    return this.client.callWithTimeout(30_000, methods.terminal_resize, kernelId, rows, cols);
  }

  /** The kernel images of the node with their users. */
  listImages(): Promise<ImageSummary[]> {
    return this.client.call(methods.list_images);
  }

  /** The pulls queued or under way, with their progress. */
  listPulls(): Promise<PullSummary[]> {
    return this.client.call(methods.list_pulls);
  }

  /** Pulls an image (a lang); returns when it is here, which may take minutes. */
  pullImage(lang: string, timeoutMs = 3_600_000): Promise<{ image: string; pulled: boolean }> {
    return this.client.callWithTimeout(timeoutMs, methods.pull_image, lang);
  }

  /** delete_image (beyond the 2018 set): removes an image (a lang); `force` also removes the idle pooled containers using it. */
  deleteImage(lang: string, force = false): Promise<ImageRemoval> {
    return this.client.callWithTimeout(this.slowMs, methods.delete_image, lang, force);
  }

  /** purge_images (beyond the 2018 set): removes several images, one answer each. */
  purgeImages(langs: string[], force = false): Promise<ImageRemoval[]> {
    return this.client.callWithTimeout(this.slowMs, methods.purge_images, langs, force);
  }

  /** gc_images (beyond the 2018 set): a pass of the image collector now; `dryRun` lists what would go and removes nothing. */
  gcImages(dryRun = false): Promise<ImageGcResult> {
    return this.client.callWithTimeout(this.slowMs, methods.gc_images, dryRun);
  }

  /**
   * commit_kernel (beyond): saves a kernel as the image `image`; with `wait`
   * it returns once the image is made (a commit takes seconds to minutes).
   */
  commitKernel(
    kernelId: string,
    image: string,
    wait = true,
    extraLabels: Record<string, string> = {},
  ): Promise<{ kernel: string; image: string; status: 'ongoing' | 'ready'; image_id: string | null }> {
    return this.client.callWithTimeout(wait ? 3_600_000 : this.slowMs, methods.commit_kernel, kernelId, image, wait, extraLabels);
  }

  /** get_commit_status (beyond): whether a commit of the kernel is under way, and how its last one ended. */
  getCommitStatus(kernelId: string) {
    return this.client.call(methods.get_commit_status, kernelId);
  }

  /** push_image (beyond): pushes an image the agent saved to its registry; returns when it is there (bounded by push_timeout). */
  pushImage(image: string, timeoutMs = 3_600_000): Promise<{ image: string; digest: string | null }> {
    return this.client.callWithTimeout(timeoutMs, methods.push_image, image);
  }

  /** reset: destroys every kernel of the agent (reason agent-reset). */
  reset(): Promise<null> {
    return this.client.callWithTimeout(this.slowMs, methods.reset);
  }

  /** drain (beyond): the node refuses new kernels and empties its warm pool; after `deadlineSec` the kernels left are destroyed. */
  drain(deadlineSec: number | null = null): Promise<DrainStatus> {
    return this.client.call(methods.drain, deadlineSec);
  }

  /** undrain (beyond): the node takes new kernels again. */
  undrain(): Promise<DrainStatus> {
    return this.client.call(methods.undrain);
  }

  /** Fails pending calls and closes the socket. */
  close(): void {
    this.client.close();
  }
}

/** KernelFileEntry is one entry of list_files. */
export interface KernelFileEntry {
  filename: string;
  size: number;
  mode: string;
  ctime: number;
  mtime: number;
  atime: number;
}
