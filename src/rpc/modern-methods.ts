/**
 * The method table of modern (Backend.AI 20.03+, Callosum) managers
 * (docs/modern-managers.rst), with the names, positional orders and result
 * shapes of `agent/server.py` at tag 24.09.0, each declared once like the
 * 2018 table (src/rpc/methods.ts): the declaration drives binding, dispatch,
 * the Callosum client and `agent methods --modern` (methods whose 24.09
 * shape is the 2018 one are the 2018 declarations). The handlers map them
 * onto the same kernel, relay and file services (src/services/modern-rpc.ts).
 */
import { define, kernelIdParam, methods } from './methods.js';
import { type KernelInfo, type KernelStats, type RunResult } from './results.js';
import { p, type OptionalParam, type Param } from './params.js';

const MiB = 1024 * 1024;

/** A session id: the same charset as kernel ids (24.09 sends UUIDs as str). */
export const sessionIdParam: Param<string> = { ...kernelIdParam, name: 'session_id' };

/** One kernel's result of create_kernels, as 24.09 returns it. */
export interface ModernKernelResult extends Omit<KernelInfo, 'cpu_set' | 'gpu_set' | 'service_ports'> {
  service_ports: unknown[];
  resource_spec: Record<string, unknown>;
  attached_devices: Record<string, unknown>;
  agent_addr: string;
  scaling_group: string;
}

/** gather_hwinfo's value per device kind (24.09 HardwareMetadata). */
export interface HardwareMetadata {
  status: 'healthy' | 'degraded' | 'offline' | 'unavailable';
  status_info: string | null;
  metadata: Record<string, string>;
}

const kernelId = kernelIdParam;
const ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const kernelSessionPair = p.custom<[string, string]>('pair', '[kernel_id, session_id]', (v) =>
  Array.isArray(v) && v.length === 2 && typeof v[0] === 'string' && typeof v[1] === 'string' && ID.test(v[0]) && ID.test(v[1])
    ? { ok: [v[0], v[1]] }
    : 'must be a [kernel_id, session_id] pair of ids',
);
const opts = p.map('opts');
/** An ImageRef as 24.09 sends it (a pickled object: its field map), or its canonical name. */
const imageRefParam = p.custom<unknown>('image_ref', 'ImageRef or str', (v) =>
  typeof v === 'string' || (typeof v === 'object' && v !== null && !Array.isArray(v))
    ? { ok: v }
    : 'must be an ImageRef or a canonical image name',
);

/** The methods served to modern managers; the order is the order of listings. */
export const modernMethods = {
  ping: define<[Param<string>], string>({
    name: 'ping',
    summary: 'Answers with the message it was given.',
    params: [p.str('msg')],
    returns: 'msg',
  }),
  health: define<[], { status: string; version: string; kernels: number }>({
    name: 'health',
    summary: 'Says whether the agent is serving, with its version and kernel count.',
    params: [],
    returns: '{status: "ok", version, kernels}',
  }),
  gather_hwinfo: define<[], Record<string, HardwareMetadata>>({
    name: 'gather_hwinfo',
    summary: 'Health of each compute device kind of the node (cpu, mem).',
    params: [],
    returns: '{device kind: {status, status_info, metadata}}',
  }),
  ping_kernel: define<[Param<string>], Record<string, number> | null>({
    name: 'ping_kernel',
    summary: "Checks that a kernel's runner answers; counts as use of the kernel.",
    params: [kernelId],
    returns: '{rtt: seconds}',
  }),
  sync_kernel_registry: define<[Param<Array<[string, string]>>], null>({
    name: 'sync_kernel_registry',
    summary:
      'Reconciles with the manager: kernels of modern sessions it does not list are destroyed, listed ones that are gone are reported terminated.',
    params: [p.list('raw_kernel_session_ids', kernelSessionPair, { maxLength: 100_000 })],
    returns: 'nil',
  }),
  create_kernels: define<
    [Param<string>, Param<string[]>, Param<Array<Record<string, unknown>>>, Param<Record<string, unknown>>, Param<Record<string, unknown>>],
    ModernKernelResult[]
  >({
    name: 'create_kernels',
    summary:
      'Creates every kernel of a session (under the creation concurrency bound); a kernel that fails is rolled back and named in the failure.',
    params: [
      sessionIdParam,
      p.list('raw_kernel_ids', kernelId, { maxLength: 64 }),
      p.list('raw_configs', p.map('config'), { maxLength: 64 }),
      p.map('raw_cluster_info'),
      p.map('kernel_image_refs'),
    ],
    returns:
      '[{id, kernel_host, repl_in_port, repl_out_port, stdin_port, stdout_port, service_ports, container_id, resource_spec, attached_devices, agent_addr, scaling_group}]',
  }),
  destroy_kernel: define<[Param<string>, Param<string>, OptionalParam<string | null>, OptionalParam<boolean>], KernelStats | null>({
    name: 'destroy_kernel',
    summary: 'Stops and removes a kernel; kernel_terminated follows unless suppress_events.',
    params: [kernelId, sessionIdParam, p.optional(p.nullable(p.str('reason', { maxLength: 256 }))), p.optional(p.bool('suppress_events'))],
    returns: 'last stats map or nil',
  }),
  interrupt_kernel: methods.interrupt_kernel,
  start_service: methods.start_service,
  shutdown_service: methods.shutdown_service,
  get_completions: methods.get_completions,
  get_logs: methods.get_logs,
  restart_kernel: define<
    [Param<string>, Param<string>, Param<Record<string, unknown>>, Param<Record<string, unknown>>],
    Record<string, unknown>
  >({
    name: 'restart_kernel',
    summary: 'Recreates a kernel container, keeping its scratch home.',
    params: [sessionIdParam, kernelId, p.map('kernel_image'), p.map('updated_config')],
    returns: '{container_id, repl_in_port, repl_out_port, stdin_port, stdout_port, service_ports}',
  }),
  execute: define<
    [
      Param<string>,
      Param<string>,
      Param<number>,
      Param<string | null>,
      Param<'query' | 'batch' | 'input' | 'continue'>,
      Param<string>,
      Param<Record<string, unknown>>,
      Param<number>,
    ],
    RunResult
  >({
    name: 'execute',
    summary: 'Runs code in a kernel, or continues a run (session id first, flush_timeout last).',
    params: [
      sessionIdParam,
      kernelId,
      p.int('api_version', { min: 1, max: 4 }),
      p.nullable(p.str('run_id', { maxLength: 64 })),
      p.oneOf('mode', ['query', 'batch', 'input', 'continue'] as const),
      p.str('code', { maxLength: 16 * MiB }),
      opts,
      p.float('flush_timeout', { min: 0, max: 3600 }),
    ],
    returns: 'run result',
  }),
  upload_file: methods.upload_file,
  download_file: methods.download_file,
  download_single: define<[Param<string>, Param<string>], Buffer>({
    name: 'download_single',
    summary: "The bytes of one file of the kernel's home.",
    params: [kernelId, p.str('filepath', { minLength: 1, maxLength: 4096 })],
    returns: 'file bytes',
  }),
  list_files: methods.list_files,
  reset_agent: define<[], null>({
    name: 'reset_agent',
    summary: 'Destroys every kernel with reason agent-reset.',
    params: [],
    returns: 'nil',
  }),
  get_local_config: define<[], Record<string, unknown>>({
    name: 'get_local_config',
    summary: "The parts of the agent's local config a 24.09 manager reads.",
    params: [],
    returns: '{agent: {abuse-report-path}, watcher: {}}',
  }),
  check_and_pull: define<[Param<Record<string, unknown>>], Record<string, string>>({
    name: 'check_and_pull',
    summary:
      'Pulls, in the background, each image of {canonical: image config} the node lacks (as auto_pull says); image_pull_started / image_pull_finished / image_pull_failed on the stream tell the outcome (the shape of releases after 24.09).',
    params: [p.map('image_configs')],
    returns: '{canonical: task id}',
  }),
  purge_images: define<
    [Param<string[]>, Param<boolean>, OptionalParam<boolean>],
    { responses: Array<{ image: string; error: string | null }> }
  >({
    name: 'purge_images',
    summary:
      'Removes kernel images by canonical name as delete_image does; one refused does not stop the others (the shape of releases after 24.09; noprune is accepted and has no effect).',
    params: [
      p.strList('image_canonicals', { minLength: 1, maxLength: 512, maxItems: 256 }),
      p.bool('force'),
      p.optional(p.bool('noprune')),
    ],
    returns: '{responses: [{image, error}]}',
  }),
  scan_gpu_alloc_map: define<[], Record<string, string>>({
    name: 'scan_gpu_alloc_map',
    summary:
      'The GPUs held by kernels: {device index: amount} as decimal strings (whole devices, so "1"; the shape of releases after 24.09).',
    params: [],
    returns: '{device id: "amount"}',
  }),
  assign_port: define<[], number>({
    name: 'assign_port',
    summary:
      'Takes one free host port of container_port_range for the manager, held until release_port (in memory only: an agent restart frees it).',
    params: [],
    returns: 'port number',
  }),
  release_port: define<[Param<number>], null>({
    name: 'release_port',
    summary: "Gives back a port assign_port gave out (a free port is a no-op; a kernel's port is a ParametersError).",
    params: [p.int('port_no', { min: 1, max: 65535 })],
    returns: 'nil',
  }),
  shutdown_agent: define<[Param<boolean>], null>({
    name: 'shutdown_agent',
    summary: 'Drains and stops the agent as SIGTERM does (after this reply); with terminate_kernels, destroys every kernel first.',
    params: [p.bool('terminate_kernels')],
    returns: 'nil',
  }),
  create_local_network: define<[Param<string>], null>({
    name: 'create_local_network',
    summary:
      'Makes the bridge network of a single-node session (docs/sessions.rst): its kernels reach each other on every port and nothing else on the node; a repeat is fine.',
    params: [p.str('network_name', { minLength: 1, maxLength: 128 })],
    returns: 'nil',
  }),
  destroy_local_network: define<[Param<string>], null>({
    name: 'destroy_local_network',
    summary: 'Removes a session network create_local_network made (one gone is fine; one still holding kernels is refused).',
    params: [p.str('network_name', { minLength: 1, maxLength: 128 })],
    returns: 'nil',
  }),
  get_commit_status: define<[Param<string>, Param<string>], { kernel: string; status: 'ongoing' | 'ready' }>({
    name: 'get_commit_status',
    summary: 'Says whether a commit of the kernel is under way (ongoing) or not (ready); subdir is accepted and not used.',
    params: [kernelId, p.str('subdir', { maxLength: 4096 })],
    returns: '{kernel, status: ongoing | ready}',
  }),
  commit: define<
    [
      Param<string>,
      Param<string>,
      OptionalParam<string | null>,
      OptionalParam<string | null>,
      OptionalParam<Record<string, unknown> | null>,
    ],
    { bgtask_id: string; kernel: string; path: null }
  >({
    name: 'commit',
    summary:
      'Saves a kernel as the image `canonical` (under image_prefix or on image_allow_list) in the background; bgtask_done / bgtask_failed tell the outcome. Saving to a file (filename) is not supported.',
    params: [
      kernelId,
      p.str('subdir', { maxLength: 4096 }),
      p.optional(p.nullable(p.str('canonical', { minLength: 1, maxLength: 384 }))),
      p.optional(p.nullable(p.str('filename', { maxLength: 4096 }))),
      p.optional(p.nullable(p.map('extra_labels'))),
    ],
    returns: '{bgtask_id, kernel, path: nil}',
  }),
  push_image: define<[Param<unknown>, Param<Record<string, unknown>>], { bgtask_id: string; canonical: string }>({
    name: 'push_image',
    summary:
      "Pushes an image the agent saved to its registry in the background (bounded by push_timeout), with registry_conf's username and password when given, else etcd's; bgtask_done / bgtask_failed tell the outcome.",
    params: [imageRefParam, p.map('registry_conf')],
    returns: '{bgtask_id, canonical}',
  }),
  drain: methods.drain,
  undrain: methods.undrain,
} as const;

/**
 * Methods a 24.09 manager may call that this build declares but does not
 * serve yet: each answers a failure naming it (never silence). Their
 * parameters are not checked, so that the failure is always that one.
 */
export const modernNotServed: readonly string[] = ['update_scaling_group', 'trigger_batch_execution'];
