/**
 * The agent's RPC methods (docs/wire-contract.rst, "RPC"), each declared once: name,
 * parameters with their limits, and result. The dispatcher, the typed client
 * and the `agent methods` listing all read this table.
 */
import { p, type OptionalParam, type Param, type ParamValues } from './params.js';

/** MethodDef is the declaration of one RPC method; `R` is the result type. */
export interface MethodDef<P extends readonly Param<unknown>[] = readonly Param<unknown>[], R = unknown> {
  readonly name: string;
  readonly summary: string;
  readonly params: P;
  /** What the method returns, for listings. */
  readonly returns: string;
  /** An older argument form that is still accepted; its values are mapped onto `params`. */
  readonly legacy?: {
    params: readonly Param<unknown>[];
    /** Maps the older form's values onto the current parameters. */
    toCanonical(values: unknown[]): ParamValues<P>;
  };
  /** Arguments are not bound or checked (a method declared but not served answers the same failure whatever it is given). */
  readonly unchecked?: boolean;
  /** Phantom field carrying the result type; never set. */
  readonly __result?: R;
}

export function define<const P extends readonly Param<unknown>[], R>(def: Omit<MethodDef<P, R>, '__result'>): MethodDef<P, R> {
  return def;
}

/** Kernel ids: a safe charset and length, since they name containers and directories. */
export const kernelIdParam = p.str('kernel_id', {
  minLength: 1,
  maxLength: 64,
  pattern: { re: /^[A-Za-z0-9][A-Za-z0-9_.-]*$/, says: 'letters, digits, "_", "." and "-", not starting with a symbol' },
});

import type {
  KernelInfo,
  ServiceResult,
  KernelStats,
  NodeStatsResult,
  RunResult,
  KernelSummary,
  ImageSummary,
  PullSummary,
  ImageRemoval,
  ImageGcResult,
  SyncResult,
  DrainStatus,
} from './results.js';

const MiB = 1024 * 1024;
const imageLang = p.str('image', { minLength: 1, maxLength: 512 });
const canonicalImage = p.str('image', { minLength: 1, maxLength: 384 });
const code = p.str('code', { maxLength: 16 * MiB });
const opts = p.map('opts');
const serviceName = p.str('service', { minLength: 1, maxLength: 64 });

/** methods is the method table of the agent (the 2018 set and beyond); the order is the order of listings. */
export const methods = {
  ping: define<[Param<string>], string>({
    name: 'ping',
    summary: 'Answers with the message it was given; checks that the agent is alive.',
    params: [p.str('msg')],
    returns: 'msg',
  }),
  create_kernel: define<[Param<string>, Param<Record<string, unknown>>], KernelInfo>({
    name: 'create_kernel',
    summary: 'Starts a kernel container (idempotent per kernel id).',
    params: [kernelIdParam, p.map('config')],
    returns: 'kernel info',
  }),
  destroy_kernel: define<[Param<string>, OptionalParam<string>], KernelStats | null>({
    name: 'destroy_kernel',
    summary: 'Stops and removes a kernel and its scratch home.',
    params: [kernelIdParam, p.optional(p.str('reason', { maxLength: 256 }))],
    returns: 'last stats map or nil (nil for a kernel the agent does not hold, reported as kernel_terminated not-found)',
  }),
  restart_kernel: define<[Param<string>, Param<Record<string, unknown>>], Omit<KernelInfo, 'id' | 'kernel_host'>>({
    name: 'restart_kernel',
    summary: 'Recreates a kernel container, keeping its scratch home and cores.',
    params: [kernelIdParam, p.map('new_config')],
    returns: 'kernel info without id and kernel_host',
  }),
  execute: define<
    [
      Param<number>,
      Param<string>,
      Param<string | null>,
      Param<'query' | 'batch' | 'input' | 'continue'>,
      Param<string>,
      Param<Record<string, unknown>>,
      OptionalParam<number>,
    ],
    RunResult
  >({
    name: 'execute',
    summary: 'Runs code in a kernel, or continues a run, and returns its output so far.',
    params: [
      p.int('api_version', { min: 1, max: 3 }),
      kernelIdParam,
      p.nullable(p.str('run_id', { maxLength: 64 })),
      p.oneOf('mode', ['query', 'batch', 'input', 'continue'] as const),
      code,
      opts,
      p.optional(p.float('flush_timeout', { min: 0, max: 3600 })),
    ],
    returns: 'run result',
  }),
  interrupt_kernel: define<[Param<string>], null>({
    name: 'interrupt_kernel',
    summary: 'Sends an interrupt (SIGINT) to the code running in a kernel.',
    params: [kernelIdParam],
    returns: 'nil',
    legacy: {
      // The 2017 (seed-era) manager sends (kernel_id, mode); the mode is ignored (docs/service-ports.rst).
      params: [kernelIdParam, p.str('mode', { maxLength: 32 })],
      toCanonical: (v) => [v[0] as string],
    },
  }),
  ping_kernel: define<[Param<string>], null>({
    name: 'ping_kernel',
    summary: "Checks that a kernel's runner answers (an error when it does not); counts as use of the kernel.",
    params: [kernelIdParam],
    returns: 'nil',
  }),
  start_service: define<[Param<string>, Param<string>, Param<Record<string, unknown>>], ServiceResult>({
    name: 'start_service',
    summary: "Starts an app the kernel's image declares in ai.backend.service-ports (or finds it running).",
    params: [kernelIdParam, serviceName, opts],
    returns: '{status: started | running | failed, error?}',
  }),
  shutdown_service: define<[Param<string>, Param<string>], ServiceResult>({
    name: 'shutdown_service',
    summary: 'Stops an app started by start_service (beyond).',
    params: [kernelIdParam, serviceName],
    returns: '{status: stopped | not-running | failed, error?}',
  }),
  get_completions: define<[Param<string>, Param<string>, Param<Record<string, unknown>>], { status: string; completions: string[] }>({
    name: 'get_completions',
    summary: 'Asks the kernel for completions of a piece of code.',
    params: [kernelIdParam, p.str('text', { maxLength: MiB }), opts],
    returns: '{status, completions}',
    legacy: {
      // The 2018 manager sends (kernel_id, mode, text, opts).
      params: [kernelIdParam, p.str('mode', { maxLength: 32 }), p.str('text', { maxLength: MiB }), opts],
      toCanonical: (v) => [v[0] as string, v[2] as string, v[3] as Record<string, unknown>],
    },
  }),
  get_logs: define<[Param<string>], { logs: string }>({
    name: 'get_logs',
    summary: "Returns the end of the kernel container's output, bounded in lines and bytes; a first line says when earlier output was cut.",
    params: [kernelIdParam],
    returns: '{logs}',
  }),
  upload_file: define<[Param<string>, Param<string>, Param<Buffer>], null>({
    name: 'upload_file',
    summary: "Writes a file into the kernel's scratch home.",
    params: [kernelIdParam, p.str('filename', { minLength: 1, maxLength: 4096 }), p.bytes('filedata', { maxLength: 1024 * MiB })],
    returns: 'nil',
  }),
  download_file: define<[Param<string>, Param<string>], Buffer>({
    name: 'download_file',
    summary: "Returns a file or folder of the kernel's scratch home as tar bytes.",
    params: [kernelIdParam, p.str('filepath', { minLength: 1, maxLength: 4096 })],
    returns: 'tar archive bytes',
  }),
  list_files: define<[Param<string>, Param<string>], { files: string; errors: string; abspath: string }>({
    name: 'list_files',
    summary: "Lists a folder of the kernel's scratch home.",
    params: [kernelIdParam, p.str('path', { maxLength: 4096 })],
    returns: '{files (JSON), errors, abspath}',
  }),
  terminal_write: define<[Param<string>, Param<Buffer>], null>({
    name: 'terminal_write',
    summary: "Writes bytes to the kernel's terminal (beyond the 2018 set: for clients that cannot reach kernel ports).",
    params: [kernelIdParam, p.bytes('data', { maxLength: MiB })],
    returns: 'nil',
  }),
  terminal_read: define<[Param<string>, Param<number>, OptionalParam<number>], { data: Buffer; cursor: number; dropped: number }>({
    name: 'terminal_read',
    summary: "Returns the terminal's output after a byte cursor, waiting up to `timeout` seconds for some (beyond).",
    params: [kernelIdParam, p.int('cursor', { min: 0 }), p.optional(p.float('timeout', { min: 0, max: 30 }))],
    returns: '{data: bytes, cursor: int (read from here next), dropped: int (bytes lost to the scrollback bound)}',
  }),
  terminal_resize: define<[Param<string>, Param<number>, Param<number>], null>({
    name: 'terminal_resize',
    summary: "Sets the terminal's window size (beyond).",
    params: [kernelIdParam, p.int('rows', { min: 1, max: 1000 }), p.int('cols', { min: 1, max: 1000 })],
    returns: 'nil',
  }),
  list_kernels: define<[], KernelSummary[]>({
    name: 'list_kernels',
    summary: 'Lists the kernels of this agent with their image, state, cores, memory, times and current usage (beyond).',
    params: [],
    returns:
      '[{id, lang, image, state, container_id, cpu_set, mem_mib, created_at, last_used, cpu_used, mem_cur_bytes, services: [{name, protocol, host, host_port, state}]}]',
  }),
  reset: define<[], null>({
    name: 'reset',
    summary: 'Destroys every kernel of this agent with reason agent-reset.',
    params: [],
    returns: 'nil',
  }),
  sync_kernels: define<[Param<string[]>], SyncResult>({
    name: 'sync_kernels',
    summary:
      "Compares the manager's kernel ids with the agent's: unlisted kernels are destroyed after sync_grace, listed ones the agent lacks reported (beyond).",
    params: [p.strList('kernel_ids', { maxItems: 100_000, minLength: 1, maxLength: 64 })],
    returns: '{missing, extra, destroyed, pending}',
  }),
  get_node_stats: define<[], NodeStatsResult>({
    name: 'get_node_stats',
    summary: "Returns the node's CPU, memory and disk figures, each kernel's cgroup figures and each GPU (beyond).",
    params: [],
    returns:
      '{time, node: {cpu_pct, mem_total_bytes, mem_available_bytes, disk_total_bytes, disk_free_bytes}, slots: {cpu_total, cpu_free, mem_total_mib, mem_free_mib}, kernels: {kernel_id: stats}, gpu_path, gpus: [{index, uuid, name, numa_node, mem_total_bytes, mem_used_bytes, util_pct, kernel_id}]}',
  }),
  list_images: define<[], ImageSummary[]>({
    name: 'list_images',
    summary:
      'Lists the kernel images on this node with their id, digest, size and how many kernels and pooled containers use each (beyond).',
    params: [],
    returns: '[{image, lang, name, tag, id, digest, size, created, kernels, pooled}]',
  }),
  list_pulls: define<[], PullSummary[]>({
    name: 'list_pulls',
    summary: 'Lists the image pulls queued or under way with their progress, per layer (beyond).',
    params: [],
    returns: '[{image, state, bytes_done, bytes_total, layers: [{id, status, done, total}]}]',
  }),
  pull_image: define<[Param<string>], { image: string; pulled: boolean }>({
    name: 'pull_image',
    summary: 'Pulls a kernel image (a lang as create_kernel takes it) and returns when it is here; progress goes out as events (beyond).',
    params: [imageLang],
    returns: '{image, pulled: false when it was already here}',
  }),
  delete_image: define<[Param<string>, OptionalParam<boolean>], ImageRemoval>({
    name: 'delete_image',
    summary:
      "Removes a kernel image; refuses one in use unless forced (force removes its idle pooled containers, never a kernel's image) (beyond).",
    params: [imageLang, p.optional(p.bool('force'))],
    returns: '{image, removed}',
  }),
  purge_images: define<[Param<string[]>, OptionalParam<boolean>], ImageRemoval[]>({
    name: 'purge_images',
    summary: 'Removes several kernel images as delete_image does; one refused does not stop the others (beyond).',
    params: [p.strList('images', { minLength: 1, maxLength: 512, maxItems: 256 }), p.optional(p.bool('force'))],
    returns: '[{image, removed, error?}]',
  }),
  gc_images: define<[OptionalParam<boolean>], ImageGcResult>({
    name: 'gc_images',
    summary:
      'Runs a pass of the image collector now: removes unused kernel images, least recently used first, until the data root is under image_gc_low; with dry_run, lists them and removes nothing (beyond).',
    params: [p.optional(p.bool('dry_run'))],
    returns:
      '{data_root, usage_pct, usage_after_pct, high_pct, low_pct, dry_run, ran, removed: [{image, names, id, size, last_used}], kept: [{image, id, reason}], failed}',
  }),
  commit_kernel: define<
    [Param<string>, Param<string>, OptionalParam<boolean>, OptionalParam<Record<string, unknown>>],
    { kernel: string; image: string; status: 'ongoing' | 'ready'; image_id: string | null }
  >({
    name: 'commit_kernel',
    summary:
      "Saves a kernel as an image named `image` (a canonical name under image_prefix or on image_allow_list), without its home and vfolders, with its image's config and labels; in the background unless `wait`; the kernel keeps running (beyond).",
    params: [kernelIdParam, canonicalImage, p.optional(p.bool('wait')), p.optional(p.map('extra_labels'))],
    returns: '{kernel, image, status: ongoing (ready with wait), image_id (with wait)}',
  }),
  get_commit_status: define<
    [Param<string>],
    {
      kernel: string;
      status: 'ongoing' | 'ready';
      last: { image: string; image_id: string | null; error: string | null; at: number } | null;
    }
  >({
    name: 'get_commit_status',
    summary: 'Says whether a commit of the kernel is under way (ongoing) or not (ready), and how its last one ended (beyond).',
    params: [kernelIdParam],
    returns: '{kernel, status: ongoing | ready, last: {image, image_id, error, at} or nil}',
  }),
  push_image: define<[Param<string>], { image: string; digest: string | null }>({
    name: 'push_image',
    summary:
      "Pushes an image the agent saved (commit_kernel) to its registry with etcd's credentials for it, bounded by push_timeout; progress goes out as events; two pushes of one image share it (beyond).",
    params: [canonicalImage],
    returns: '{image, digest}',
  }),
  drain: define<[OptionalParam<number | null>], DrainStatus>({
    name: 'drain',
    summary:
      'Drains the node: new kernels are refused (agent.NodeDraining, retryable), the warm pool empties, running kernels stay; after `deadline` seconds those left are destroyed with reason node-drain. Kept in etcd across restarts until undrain (beyond).',
    params: [p.optional(p.nullable(p.float('deadline', { min: 0, max: 7 * 24 * 3600 })))],
    returns: '{draining, since, deadline (unix seconds or nil), kernels}',
  }),
  undrain: define<[], DrainStatus>({
    name: 'undrain',
    summary: 'Ends a drain: the node takes new kernels again and the warm pool refills (beyond).',
    params: [],
    returns: '{draining, since, deadline, kernels}',
  }),
} as const;
