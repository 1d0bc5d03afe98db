/**
 * The result types of the RPC methods (docs/wire-contract.rst, "RPC" and
 * "Events"; docs/service-ports.rst; and the calls beyond the 2018 set): what the method table (methods.ts)
 * declares each method to return, and what the services build.
 */

/** The result of sync_kernels. */
export interface SyncResult {
  /** Ids the manager listed that this agent does not hold (reported already-terminated). */
  missing: string[];
  /** Kernels this agent holds that the manager did not list. */
  extra: string[];
  /** Of those, the ones destroyed now (their grace is over). */
  destroyed: string[];
  /** Of those, the ones waiting for their grace to run out (with `sync_grace` 0: all of them, never destroyed). */
  pending: string[];
}

/** KernelInfo is the kernel info returned by create_kernel (docs/wire-contract.rst, "RPC"). */
export interface KernelInfo {
  id: string;
  kernel_host: string;
  repl_in_port: number;
  repl_out_port: number;
  stdin_port: number;
  stdout_port: number;
  container_id: string;
  cpu_set: number[];
  gpu_set: number[];
  /** The image's apps and their host ports (docs/service-ports.rst); empty when it declares none. */
  service_ports: ServicePort[];
}

/** One app of a kernel's image (docs/service-ports.rst). */
export interface ServicePort {
  name: string;
  protocol: 'tcp' | 'pty' | 'http';
  container_port: number;
  host_port: number;
}

/** What start_service and shutdown_service return: the runner's `service-result` map. */
export interface ServiceResult {
  status: 'started' | 'running' | 'failed' | 'stopped' | 'not-running';
  error?: string;
  [key: string]: unknown;
}

/** KernelStats are the per-kernel resource figures (docs/wire-contract.rst, "Events"). */
export interface KernelStats {
  cpu_used: number;
  mem_max_bytes: number;
  mem_cur_bytes: number;
  net_rx_bytes: number;
  net_tx_bytes: number;
  io_read_bytes: number;
  io_write_bytes: number;
  io_max_scratch_size: number;
  io_cur_scratch_size: number;
  /** Beyond: how a container that died by itself ended, `exit-code-<n>`, and its exit code (kernel_terminated only). */
  end_detail?: string;
  exit_code?: number;
  /** The most GPU memory the kernel's processes held at the samples (GPU kernels only; see README, GPUs). */
  gpu_mem_max_bytes?: number;
}

/** SlotFigures are the node's schedulable core places and memory (MiB) in all and free now (README, memory accounting). */
export interface SlotFigures {
  cpu_total: number;
  cpu_free: number;
  mem_total_mib: number;
  mem_free_mib: number;
}

/** NodeStatsResult is the result of get_node_stats (beyond the 2018 set). */
export interface NodeStatsResult {
  /** Unix seconds when the figures were read. */
  time: number;
  /** The node: CPU busy percent over all cores, memory and the scratch root's disk, in bytes. */
  node: { cpu_pct: number; mem_total_bytes: number; mem_available_bytes: number; disk_total_bytes: number; disk_free_bytes: number };
  /** The schedulable totals (the heartbeat's cpu_slots, mem_slots in MiB) and what of them is free now. */
  slots: SlotFigures;
  /** Cgroup figures of each running kernel, by kernel id. */
  kernels: Record<string, KernelStats>;
  /** How GPUs get into containers on this node: runtime, device-nodes, or none (CPU fallback). */
  gpu_path: string;
  /** Each usable GPU, with its figures at the last detection and the kernel holding it. */
  gpus: Array<{
    index: number;
    uuid: string;
    name: string;
    numa_node: number | null;
    mem_total_bytes: number;
    mem_used_bytes: number;
    util_pct: number | null;
    kernel_id: string | null;
  }>;
}

/** RunResult is the result of execute (docs/wire-contract.rst, "RPC"). */
export interface RunResult {
  runId: string;
  status: 'finished' | 'continued' | 'waiting-input' | 'build-finished' | 'exec-timeout';
  exitCode: number | null;
  options: Record<string, unknown> | null;
  files: Array<{ name: string; size: number }>;
  /** Text entries are strings for a client; inside the agent they are still UTF-8 bytes (wire/utf8-text.ts). */
  console?: Array<[string, unknown]>;
  stdout?: string;
  stderr?: string;
  media?: Array<[string, unknown]>;
  html?: string[];
}

/** KernelSummary is one kernel as list_kernels describes it (beyond the 2018 set). */
export interface KernelSummary {
  id: string;
  /** `name:tag` as given to create_kernel. */
  lang: string;
  image: string;
  state: 'running' | 'restarting' | 'destroying';
  container_id: string;
  cpu_set: number[];
  mem_mib: number;
  /** Unix seconds. */
  created_at: number;
  /** Unix seconds of the last RPC on the kernel (what idle reaping counts from). */
  last_used: number;
  /** CPU time in ms and current memory in bytes from the cgroup; null when they could not be read. */
  cpu_used: number | null;
  mem_cur_bytes: number | null;
  /** The image's apps, where they are reached (the kernel host and host port) and their last known state (section 6). */
  services: Array<{
    name: string;
    protocol: string;
    host: string;
    host_port: number;
    state: 'running' | 'stopped' | 'failed' | 'not-started';
  }>;
}

/** One local kernel image as list_images describes it (beyond the 2018 set). */
export interface ImageSummary {
  /** The full image name with its tag, e.g. `lablup/kernel-python:3-debian`. */
  image: string;
  /** The name create_kernel takes (`name:tag` under image_prefix, or the allow-listed name). */
  lang: string;
  /** The repository, without the tag. */
  name: string;
  tag: string;
  id: string;
  /** `sha256:...` of the registry manifest it came from; null for an image built or loaded here. */
  digest: string | null;
  size: number;
  /** Unix seconds. */
  created: number;
  /** Kernels and idle pooled containers that use it. */
  kernels: number;
  pooled: number;
}

/** A pull queued or under way, as list_pulls describes it (beyond). */
export interface PullSummary {
  image: string;
  state: 'queued' | 'pulling';
  bytes_done: number;
  bytes_total: number;
  layers: Array<{ id: string; status: string; done: number; total: number }>;
}

/** What delete_image returns, and purge_images for each image. */
export interface ImageRemoval {
  image: string;
  removed: boolean;
  /** Why it was not removed (purge_images only; delete_image raises instead). */
  error?: string;
}

/** An image the collector removed, or (dry run) would remove. */
export interface ImageGcEntry {
  /** Its first kernel image name. */
  image: string;
  /** All its names: tags, then the `repo@digest` references of the registries it came from. */
  names: string[];
  id: string;
  size: number;
  /** Unix seconds of its last recorded use; null when none was recorded. */
  last_used: number | null;
}

/** What gc_images returns: one pass of the image collector (beyond). */
export interface ImageGcResult {
  data_root: string;
  /** Percent used of the data root's file system (as df counts it) when the pass began, and when it ended. */
  usage_pct: number;
  usage_after_pct: number;
  high_pct: number;
  low_pct: number;
  dry_run: boolean;
  /** Whether usage called for removals (over the low watermark for a pass asked for, over the high one for a periodic one). */
  ran: boolean;
  /** In the order they went (dry run: every image that may go, in the order a pass takes them until usage is under low_pct). */
  removed: ImageGcEntry[];
  /** The agent's kernel images that stay, and why. */
  kept: Array<{ image: string; id: string; reason: string }>;
  failed: Array<{ image: string; id: string; error: string }>;
}

/** DrainStatus is what drain and undrain answer (src/services/drain.ts): whether the node drains, since when and until when. */
export interface DrainStatus {
  draining: boolean;
  /** Unix seconds the drain began; null when not draining. */
  since: number | null;
  /** Unix seconds after which the kernels left are destroyed (reason node-drain); null: none. */
  deadline: number | null;
  /** Kernels the node still holds. */
  kernels: number;
}
