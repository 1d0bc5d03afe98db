/**
 * Every event the agent sends, declared once with its arguments: the 2018
 * events of docs/wire-contract.rst, "Events" (PUSH to the manager's sink, some beyond the
 * 2018 set) and the modern ones of section 7 (the Redis stream of 24.09
 * managers). The emitters are typed by these names, so an event that is not
 * declared here does not compile, and the manual's event tables
 * (docs/reference/events.rst) are written from these lists.
 */

/** EventArg is one argument of an event, as it goes out (msgpack). */
export interface EventArg {
  readonly name: string;
  readonly type: string;
}

/** EventSpec is the declaration of one event: its name, its arguments and when it is sent. */
export interface EventSpec {
  readonly name: string;
  readonly args: readonly EventArg[];
  readonly when: string;
  /** Beyond the 2018 set (its manager ignores it). */
  readonly beyond?: boolean;
}

const kernelId = { name: 'kernel_id', type: 'str' } as const;

/** The events of 2018 managers: `[name, agent id, msgpack(args)]` on a PUSH socket to `nodes/manager/event_addr`. */
export const AGENT_EVENTS = [
  { name: 'instance_started', args: [], when: 'the event socket connected to a (new) manager sink; a heartbeat follows at once' },
  {
    name: 'instance_heartbeat',
    args: [
      {
        name: 'agent_info',
        type: 'map {ip, region, addr, mem_slots (MiB), cpu_slots, gpu_slots, images; beyond: node, kernel_stats, public_key}',
      },
    ],
    when: 'every heartbeat_interval seconds',
  },
  {
    name: 'instance_terminated',
    args: [{ name: 'reason', type: 'str: shutdown (a signal) or shutdown-agent (shutdown_agent)' }],
    when: 'the agent stops (SIGTERM, SIGINT, a modern shutdown_agent)',
  },
  { name: 'kernel_creating', args: [kernelId], when: 'a create_kernel starts' },
  { name: 'kernel_started', args: [kernelId], when: 'a kernel was created (cold or from the warm pool) or restarted' },
  {
    name: 'kernel_terminated',
    args: [kernelId, { name: 'reason', type: 'str' }, { name: 'stats', type: 'map of the last stats or nil' }],
    when: 'a kernel is gone: destroyed, reset, idle, died by itself (self-terminated, oom-killed), restarting, already-terminated (sync_kernels), not-found (destroy_kernel of a kernel not held), create-abandoned (its creator was gone), or node-drain (left at the deadline of a drain)',
  },
  {
    name: 'kernel_runner_restarted',
    args: [kernelId, { name: 'line', type: 'str: how the runner ended' }],
    when: "the kernel's runner died and the entrypoint started a new one",
    beyond: true,
  },
  {
    name: 'kernel_pulling',
    args: [kernelId, { name: 'image', type: 'str' }],
    when: 'a create waits for the pull of its image',
    beyond: true,
  },
  {
    name: 'image_pull_progress',
    args: [
      { name: 'image', type: 'str' },
      { name: 'bytes_done', type: 'int' },
      { name: 'bytes_total', type: 'int' },
    ],
    when: 'at most once a second per image while it is pulled (compressed bytes), and once at the end with bytes_done = bytes_total',
    beyond: true,
  },
  { name: 'image_pull_finished', args: [{ name: 'image', type: 'str' }], when: 'a pull ended well', beyond: true },
  {
    name: 'image_pull_failed',
    args: [
      { name: 'image', type: 'str' },
      { name: 'reason', type: 'str' },
    ],
    when: 'a pull failed',
    beyond: true,
  },
  {
    name: 'image_commit_started',
    args: [kernelId, { name: 'image', type: 'str: the image being made' }],
    when: 'a kernel is being saved as an image (commit_kernel, a modern commit)',
    beyond: true,
  },
  {
    name: 'image_commit_finished',
    args: [kernelId, { name: 'image', type: 'str' }, { name: 'image_id', type: 'str: sha256:...' }],
    when: 'a kernel was saved as an image',
    beyond: true,
  },
  {
    name: 'image_commit_failed',
    args: [kernelId, { name: 'image', type: 'str' }, { name: 'reason', type: 'str' }],
    when: 'saving a kernel as an image failed (nothing of it is left)',
    beyond: true,
  },
  {
    name: 'image_push_progress',
    args: [
      { name: 'image', type: 'str' },
      { name: 'bytes_done', type: 'int' },
      { name: 'bytes_total', type: 'int' },
    ],
    when: 'at most once a second while a saved image is pushed, and once at the end with bytes_done = bytes_total',
    beyond: true,
  },
  { name: 'image_push_finished', args: [{ name: 'image', type: 'str' }], when: 'a push ended well', beyond: true },
  {
    name: 'image_push_failed',
    args: [
      { name: 'image', type: 'str' },
      { name: 'reason', type: 'str' },
    ],
    when: 'a push failed or took longer than push_timeout',
    beyond: true,
  },
  {
    name: 'image_removed',
    args: [
      { name: 'image', type: 'str: the name removed (the first, when it had several)' },
      { name: 'image_id', type: 'str: sha256:...' },
      { name: 'last_used', type: 'float: unix seconds of its last recorded use, or nil' },
      { name: 'usage_pct', type: "float: the data root's usage (percent) before it went" },
    ],
    when: "the image collector removed an unused kernel image (the data root's usage was over image_gc_high, or agentctl images gc)",
    beyond: true,
  },
] as const satisfies readonly EventSpec[];

const modernKernel = [kernelId, { name: 'session_id', type: 'str' }, { name: 'reason', type: 'str' }] as const;

/** The events of modern (24.09) managers: `XADD events` in Redis database 4 with fields name, source (the agent id) and args (msgpack). */
export const MODERN_EVENTS = [
  { name: 'agent_started', args: [{ name: 'reason', type: 'str (empty)' }], when: 'as instance_started' },
  {
    name: 'agent_heartbeat',
    args: [
      {
        name: 'agent_info',
        type: 'map {ip, region, scaling_group, addr, public_key, public_host, resource_slots, version, compute_plugins, images, images.opts, architecture, auto_terminate_abusing_kernel}',
      },
    ],
    when: 'every heartbeat_interval seconds',
  },
  {
    name: 'agent_terminated',
    args: [{ name: 'reason', type: 'str: agent-termination (a signal) or shutdown-agent' }],
    when: 'the agent stops',
  },
  {
    name: 'kernel_preparing',
    args: [...modernKernel, { name: 'data', type: 'map (empty)' }],
    when: 'a create of a kernel of a modern session starts',
  },
  { name: 'kernel_creating', args: [...modernKernel, { name: 'data', type: 'map (empty)' }], when: 'right after kernel_preparing' },
  {
    name: 'kernel_started',
    args: [...modernKernel, { name: 'creation_info', type: "map: the kernel's create_kernels result" }],
    when: 'a kernel of a modern session was created',
  },
  { name: 'kernel_terminating', args: [...modernKernel], when: 'a kernel of a modern session is gone (before kernel_terminated)' },
  {
    name: 'kernel_terminated',
    args: [...modernKernel, { name: 'exit_code', type: 'int (-1) or nil' }],
    when: "a kernel of a modern session is gone (24.09's reasons; agent-reset and node-drain are reported as agent-termination), or a listed one is already gone (sync_kernel_registry)",
  },
  {
    name: 'image_pull_started',
    args: [
      { name: 'image', type: 'str: canonical' },
      { name: 'agent_id', type: 'str' },
      { name: 'timestamp', type: 'float (s)' },
    ],
    when: 'an image of check_and_pull is being pulled (the shape of releases after 24.09)',
    beyond: true,
  },
  {
    name: 'image_pull_finished',
    args: [
      { name: 'image', type: 'str: canonical' },
      { name: 'agent_id', type: 'str' },
      { name: 'timestamp', type: 'float (s)' },
      { name: 'msg', type: 'str "Image already exists" when nothing was pulled, else nil' },
    ],
    when: 'an image of check_and_pull is here (the shape of releases after 24.09)',
    beyond: true,
  },
  {
    name: 'image_pull_failed',
    args: [
      { name: 'image', type: 'str: canonical' },
      { name: 'agent_id', type: 'str' },
      { name: 'msg', type: 'str: why' },
    ],
    when: 'a pull of check_and_pull failed (the shape of releases after 24.09)',
    beyond: true,
  },
  {
    name: 'bgtask_done',
    args: [
      { name: 'task_id', type: 'str: the bgtask_id of commit or push_image' },
      { name: 'message', type: 'str or nil' },
    ],
    when: 'a background task of commit or push_image ended well',
  },
  {
    name: 'bgtask_failed',
    args: [
      { name: 'task_id', type: 'str' },
      { name: 'message', type: 'str: why' },
    ],
    when: 'a background task of commit or push_image failed',
  },
] as const satisfies readonly EventSpec[];

/** The name of a 2018 event. */
export type AgentEventName = (typeof AGENT_EVENTS)[number]['name'];
/** The name of a modern event. */
export type ModernEventName = (typeof MODERN_EVENTS)[number]['name'];
