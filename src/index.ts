/**
 * The public surface of the package for people who write managers and tools:
 * the typed RPC client (AgentApi, one method per RPC), the method table it is
 * typed by, the errors, and the receiver of the agents' events.
 */
export { AgentClient, type AgentClientOptions } from './rpc/client.js';
export { AgentApi, type AgentApiOptions, type ExecuteMode, type KernelConfig, type KernelFileEntry } from './rpc/api.js';
export { describeMethods } from './rpc/listing.js';
export { methods, type MethodDef } from './rpc/methods.js';
export { type KernelInfo, type KernelStats, type KernelSummary, type NodeStatsResult, type RunResult } from './rpc/results.js';
export type { HeartbeatRecord } from './services/heartbeat.js';
export { AgentError, RemoteError, RpcTimeoutError, WireErrors, isRetryable } from './errors.js';
export { EventReceiver, decodeHeartbeatImages, registerEventSink, type AgentEvent } from './events/receiver.js';
export { EtcdStore } from './adapters/etcd.js';
export { createLogger, silentLogger, type Logger } from './log.js';
export { msgpackCodec, type Codec } from './wire/codec.js';
