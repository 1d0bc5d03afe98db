/**
 * The public surface of the package for people who write managers and tools:
 * the typed RPC client, the method table it is typed by, and the errors.
 */
export { AgentClient, type AgentClientOptions } from './rpc/client.js';
export { methods, describeMethods, type KernelInfo, type KernelStats, type NodeStatsResult, type RunResult, type MethodDef } from './rpc/methods.js';
export type { HeartbeatRecord } from './services/heartbeat.js';
export { AgentError, RemoteError, RpcTimeoutError, isRetryable } from './errors.js';
export { msgpackCodec, type Codec } from './wire/codec.js';
