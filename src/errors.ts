/**
 * The single catalogue of the agent's error classes.
 *
 * Every failure that can reach a client is an {@link AgentError}: it carries
 * the type name that goes on the wire (docs/wire-contract.rst, "RPC") and a message
 * that says what went wrong and what to do. Adapters turn Docker, etcd and
 * ZeroMQ failures into these at their boundary; the RPC dispatcher turns
 * these into wire errors in one place (`toWireError`).
 */

/**
 * AgentError is the base of every error the agent reports to a client. Each
 * class declares its wire name and retryability once, as statics; instances
 * read them from their class, and every table of errors (WireErrors, the
 * client's reconstruction of RemoteError, the Callosum names, the manual's
 * reference) is derived from the classes.
 */
export class AgentError extends Error {
  /** Exception type name sent to the client, e.g. `agent.KernelNotFound`. */
  static readonly wireName: string = 'agent.AgentError';
  /** Whether the same call may succeed if simply tried again later. */
  static readonly retryable: boolean = false;
  /**
   * The exception name this error travels under on the aiozmq port: a Python
   * builtin, because the 2018 manager handles only those on its typed path
   * (any other name ends in its bare internal-server-error); the agent's own
   * name follows the message as the last arg (docs/wire-contract.rst, "RPC").
   */
  static readonly aiozmqName: string = 'builtins.RuntimeError';
  /** Where the 2018 agent raised another builtin for the same failure in one method, that method's name (e.g. `execute`). */
  static readonly aiozmqNameIn: Readonly<Record<string, string>> = {};

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }

  /** The wire name of this error's class. */
  get wireName(): string {
    return (this.constructor as typeof AgentError).wireName;
  }

  /** Whether this error's class is retryable (read it through {@link isRetryable} for any thrown value). */
  get retryable(): boolean {
    return (this.constructor as typeof AgentError).retryable;
  }

  /** Positional args of the wire error; a readable message by default. */
  wireArgs(): unknown[] {
    return [this.message];
  }
}

/**
 * ParametersError is raised when a call's arguments do not fit the method's
 * declaration or its config refuses a value. On the aiozmq port it is an
 * AssertionError, as the 2018 agent asserted on its config (aiozmq's own
 * ParametersError ends in the 2018 manager's bare internal-server-error);
 * {@link ArgumentsError} keeps aiozmq's name.
 */
export class ParametersError extends AgentError {
  static override readonly wireName = 'aiozmq.rpc.base.ParametersError';
  static override readonly aiozmqName: string = 'builtins.AssertionError';
}

/**
 * ArgumentsError is the ParametersError of arguments that do not fit the
 * method's signature (count, names, types, declared limits): aiozmq's own
 * error on the aiozmq port too, as the stock server sends it.
 */
export class ArgumentsError extends ParametersError {
  static override readonly aiozmqName: string = 'aiozmq.rpc.base.ParametersError';
}

/**
 * ImpossibleRequestError is raised when a kernel asks for more than the node
 * could ever hold (more cores or memory than it has, a core it lacks, an
 * empty cpu_set): a ParametersError, never retryable, whose message names
 * the node's figures. A request that could fit later is a NoResourcesError.
 */
export class ImpossibleRequestError extends ParametersError {}

/** MethodNotFoundError is raised for a method name the agent does not serve. */
export class MethodNotFoundError extends AgentError {
  static override readonly wireName = 'aiozmq.rpc.base.NotFoundError';
  static override readonly aiozmqName = 'aiozmq.rpc.base.NotFoundError';
  constructor(readonly method: string) {
    super(`no such method: ${method}`);
  }
  /** aiozmq's NotFoundError carries the bare method name. */
  override wireArgs(): unknown[] {
    return [this.method];
  }
}

/** NotImplementedYetError is raised by methods of the contract that this build does not serve yet. */
export class NotImplementedYetError extends AgentError {
  static override readonly wireName = 'agent.NotImplemented';
  static override readonly aiozmqName = 'builtins.NotImplementedError';
  constructor(method: string) {
    super(`${method} is part of the agent protocol but is not implemented in this agent version yet`);
  }
}

/** KernelNotFoundError is raised when a call names a kernel id the agent does not hold. */
export class KernelNotFoundError extends AgentError {
  static override readonly wireName = 'agent.KernelNotFound';
  /** The 2018 agent's registry lookup raised KeyError; its execute raised RuntimeError. */
  static override readonly aiozmqName = 'builtins.KeyError';
  static override readonly aiozmqNameIn = { execute: 'builtins.RuntimeError' };
  constructor(kernelId: string) {
    super(`no kernel with id ${kernelId} on this agent; list kernels or create it first`);
  }
}

/** InvalidPathError is raised for a kernel file path that is malformed or would leave the kernel's scratch home. */
export class InvalidPathError extends AgentError {
  static override readonly wireName = 'agent.InvalidPath';
  static override readonly aiozmqName = 'builtins.AssertionError';
}

/** FileTooLargeError is raised when a file operation would exceed a configured size limit. */
export class FileTooLargeError extends AgentError {
  static override readonly wireName = 'agent.FileTooLarge';
  static override readonly aiozmqName = 'builtins.AssertionError';
}

/** KernelFileNotFoundError is raised when a path inside a kernel's scratch home does not exist. */
export class KernelFileNotFoundError extends AgentError {
  static override readonly wireName = 'agent.FileNotFound';
  static override readonly aiozmqName = 'builtins.LookupError';
}

/** ImageNotFoundError is raised when a kernel's image is not on this node and the agent may not pull it (auto_pull=never). */
export class ImageNotFoundError extends AgentError {
  static override readonly wireName = 'agent.ImageNotFound';
  static override readonly aiozmqName = 'builtins.LookupError';
  constructor(image: string, message?: string) {
    super(
      message ??
        `image ${image} is not on this node and auto_pull is never: pull it (agentctl images pull, or the pull_image call), set auto_pull to missing, ` +
          'or build it (deploy/kernels/build-base.sh builds lablup/kernel-python:3-debian)',
    );
  }
}

/** ImagePullError is raised when pulling an image fails or times out; the message names the image and the cause. */
export class ImagePullError extends AgentError {
  static override readonly wireName = 'agent.ImagePullFailed';
}

/** ImageCommitError is raised when saving a kernel as an image fails; the message names the kernel, the image and the cause, and nothing half-made is left. */
export class ImageCommitError extends AgentError {
  static override readonly wireName = 'agent.ImageCommitFailed';
}

/** ImagePushError is raised when pushing an image to its registry fails or times out; the message names the image and the cause. */
export class ImagePushError extends AgentError {
  static override readonly wireName = 'agent.ImagePushFailed';
}

/** ImageInUseError is raised by delete_image and purge_images for an image that kernels or pooled containers use. */
export class ImageInUseError extends AgentError {
  static override readonly wireName = 'agent.ImageInUse';
}

/** DockerError is raised when the Docker engine refuses or fails a request; the message says which step. */
export class DockerError extends AgentError {
  static override readonly wireName = 'agent.DockerError';
}

/** KernelCreationError is raised when a step of create_kernel fails; everything taken was given back. */
export class KernelCreationError extends AgentError {
  static override readonly wireName = 'agent.KernelCreationFailed';
}

/** NoResourcesError is raised when the node has no room for what a kernel asks. */
export class NoResourcesError extends AgentError {
  static override readonly wireName = 'agent.InsufficientResources';
  static override readonly retryable = true;
}

/**
 * DestroyPendingError is raised when destroy_kernel could not see the
 * container gone within destroy_timeout (a hung or failing Docker): the
 * message says what was done; the agent keeps removing it in the background,
 * releases the kernel's resources and sends kernel_terminated once it is
 * gone. Retryable: a later destroy_kernel answers how it ended.
 */
export class DestroyPendingError extends AgentError {
  static override readonly wireName = 'agent.DestroyPending';
  static override readonly retryable = true;
}

/** NoSpaceError is raised when a write to a kernel's home finds its file system full (ENOSPC, EDQUOT); nothing half-written is left. */
export class NoSpaceError extends AgentError {
  static override readonly wireName = 'agent.NoSpace';
}

/** RunNotFoundError is raised for a `continue` or `input` naming a run the kernel does not have. */
export class RunNotFoundError extends AgentError {
  static override readonly wireName = 'agent.RunNotFound';
  static override readonly aiozmqName = 'builtins.LookupError';
}

/**
 * RunLostError is raised for a `continue` of a run that was in flight when
 * the agent restarted and that the kernel's runner no longer holds: its end
 * and output cannot be recovered (unlike RunNotFound, the run did exist).
 */
export class RunLostError extends AgentError {
  static override readonly wireName = 'agent.RunLost';
}

/** KernelUnresponsiveError is raised when the kernel runner does not answer a request in time. */
export class KernelUnresponsiveError extends AgentError {
  static override readonly wireName = 'agent.KernelUnresponsive';
  static override readonly retryable = true;
}

/** AgentShuttingDownError is raised for calls that arrive while the agent drains. */
export class AgentShuttingDownError extends AgentError {
  static override readonly wireName = 'agent.ShuttingDown';
  static override readonly retryable = true;
  constructor() {
    super('the agent is shutting down; retry against the agent once it is back');
  }
}

/**
 * NodeDrainingError is raised for a new kernel asked of a draining node
 * (`agentctl drain`, the node's `drain` key in etcd, or SIGTERM with
 * sigterm_action drain): its running kernels stay, new ones go elsewhere.
 * Retryable: another node, or this one once undrained, takes the kernel.
 */
export class NodeDrainingError extends AgentError {
  static override readonly wireName = 'agent.NodeDraining';
  static override readonly retryable = true;
}

/** InternalError stands for any failure that is not one of ours; details go to the agent log. */
export class InternalError extends AgentError {
  static override readonly wireName = 'agent.InternalError';
}

/** ConfigError is raised when a setting, flag or environment value is invalid; it names the key. */
export class ConfigError extends AgentError {
  static override readonly wireName = 'agent.ConfigError';
  static override readonly aiozmqName = 'builtins.ValueError';
}

/** RpcTimeoutError is raised by the client when no reply arrives within the call's timeout. */
export class RpcTimeoutError extends AgentError {
  static override readonly wireName = 'agent.Timeout';
  static override readonly retryable = true;
}

/** EtcdUnavailableError is raised when etcd does not answer (no endpoint reachable, a deadline passed); the same call may work once etcd is back. */
export class EtcdUnavailableError extends AgentError {
  static override readonly wireName = 'agent.EtcdUnavailable';
  static override readonly retryable = true;
  constructor(
    message: string,
    /** The short cause (`deadline exceeded`, `no endpoint answers`, the gRPC status), for one-line reports. */
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** EtcdError is raised when etcd answers but refuses or fails a request (permission, auth, a lost lease); the message says which step. */
export class EtcdError extends AgentError {
  static override readonly wireName = 'agent.EtcdError';
}

/**
 * The errors the agent sends to clients, by the name of their
 * {@link WireErrors} constant: the one list of the catalogue; each class
 * brings its own wire name and retryability.
 */
export const WIRE_ERROR_CLASSES = {
  Parameters: ParametersError,
  MethodNotFound: MethodNotFoundError,
  NotImplemented: NotImplementedYetError,
  KernelNotFound: KernelNotFoundError,
  InvalidPath: InvalidPathError,
  FileTooLarge: FileTooLargeError,
  FileNotFound: KernelFileNotFoundError,
  ImageNotFound: ImageNotFoundError,
  ImagePullFailed: ImagePullError,
  ImageInUse: ImageInUseError,
  ImageCommitFailed: ImageCommitError,
  ImagePushFailed: ImagePushError,
  Docker: DockerError,
  KernelCreationFailed: KernelCreationError,
  InsufficientResources: NoResourcesError,
  DestroyPending: DestroyPendingError,
  NoSpace: NoSpaceError,
  RunNotFound: RunNotFoundError,
  RunLost: RunLostError,
  KernelUnresponsive: KernelUnresponsiveError,
  ShuttingDown: AgentShuttingDownError,
  NodeDraining: NodeDrainingError,
  Internal: InternalError,
  Config: ConfigError,
  EtcdUnavailable: EtcdUnavailableError,
  Etcd: EtcdError,
} as const;

type WireErrorClasses = typeof WIRE_ERROR_CLASSES;

/**
 * WireErrors names the error types the agent sends, so that clients compare
 * `RemoteError.remoteType` against a constant instead of a string literal;
 * derived from the classes of the catalogue (`WIRE_ERROR_CLASSES` in src/errors.ts).
 */
export const WireErrors = Object.freeze(Object.fromEntries(Object.entries(WIRE_ERROR_CLASSES).map(([k, c]) => [k, c.wireName]))) as {
  readonly [K in keyof WireErrorClasses]: WireErrorClasses[K]['wireName'];
};

/** The short form of a wire name (`agent.KernelNotFound` -> `KernelNotFound`), as exception names are given where only those travel (Callosum, reprs). */
export function shortWireName(wireName: string): string {
  return wireName.slice(wireName.lastIndexOf('.') + 1);
}

/** What the catalogue knows of an error class: its name and the statics it declares. */
export interface WireErrorClass {
  readonly name: string;
  readonly wireName: string;
  readonly retryable: boolean;
  readonly aiozmqName: string;
  readonly aiozmqNameIn: Readonly<Record<string, string>>;
}

/** The catalogue's classes by wire name and by short name (Callosum replies carry only the short one). */
const CLASS_BY_NAME: ReadonlyMap<string, WireErrorClass> = new Map(
  Object.values(WIRE_ERROR_CLASSES).flatMap((c): Array<[string, WireErrorClass]> => [
    [c.wireName, c],
    [shortWireName(c.wireName), c],
  ]),
);

/** The error class of a wire type name, full (`agent.KernelNotFound`) or short (`KernelNotFound`); undefined for a type not in the catalogue. */
export function wireErrorClass(type: string): WireErrorClass | undefined {
  return CLASS_BY_NAME.get(type);
}

/**
 * RemoteError is raised by the client for an error reply; it keeps the wire
 * type name (compare with {@link WireErrors}), the args and the repr, and is
 * retryable when the agent's error class is.
 */
export class RemoteError extends AgentError {
  constructor(
    readonly remoteType: string,
    readonly remoteArgs: unknown[],
    readonly remoteRepr: string,
  ) {
    super(`${remoteType}: ${remoteArgs.length === 1 ? String(remoteArgs[0]) : JSON.stringify(remoteArgs)}`);
  }

  /** Retryable as the agent's error class is (false for a type this client does not know). */
  override get retryable(): boolean {
    return wireErrorClass(this.remoteType)?.retryable ?? false;
  }

  /** The agent's own message, without the type name. */
  get remoteMessage(): string {
    return this.remoteArgs.length === 1 ? String(this.remoteArgs[0]) : JSON.stringify(this.remoteArgs);
  }
}

/** isRetryable says whether an error is worth retrying as is: the one reading of retryability, from the error's class. */
export function isRetryable(err: unknown): boolean {
  return err instanceof AgentError && err.retryable;
}

/** A wire error: what goes into the reply payload when is_error is set. */
export interface WireError {
  type: string;
  args: unknown[];
  repr: string;
  /** The builtin name it travels under on the aiozmq port where that is not `type` (AgentError.aiozmqName). */
  builtin?: string;
}

/**
 * The `[type, args, repr]` of an error reply on the aiozmq port: under its
 * builtin name, with the agent's own name as the last arg, so that the 2018
 * manager's `issubclass()` works and shows both in `agent-details`.
 */
export function aiozmqErrorValue(e: WireError): [string, unknown[], string] {
  if (!e.builtin || e.builtin === e.type) return [e.type, e.args, e.repr];
  const args = [...e.args, e.type];
  return [e.builtin, args, `${shortWireName(e.builtin)}(${args.map(pyRepr).join(', ')})`];
}

/**
 * The {@link RemoteError} of an aiozmq error reply: a builtin name whose
 * last arg is one of the agent's names is read back as that name, so that
 * clients see the agent's own error kind on either port.
 */
export function remoteErrorOf(type: string, args: unknown[], repr: string): RemoteError {
  const last = args[args.length - 1];
  if (type.startsWith('builtins.') && args.length >= 2 && typeof last === 'string' && wireErrorClass(last)?.wireName === last)
    return new RemoteError(last, args.slice(0, -1), repr);
  return new RemoteError(type, args, repr);
}

/** Python-style repr of a string, so that the repr field reads like aiozmq's. */
export function pyRepr(value: unknown): string {
  if (typeof value === 'string') {
    const quote = value.includes("'") && !value.includes('"') ? '"' : "'";
    const body = value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/\r/g, '\\r').replace(/\t/g, '\\t');
    return quote + (quote === "'" ? body.replace(/'/g, "\\'") : body) + quote;
  }
  if (value === null || value === undefined) return 'None';
  if (typeof value === 'boolean') return value ? 'True' : 'False';
  return JSON.stringify(value) ?? String(value);
}

/**
 * Turns any thrown value into the wire error sent to the client: ours keep
 * their type name and message; anything else becomes an internal error whose
 * message points at the agent log, where the caller logs the details.
 */
export function toWireError(err: unknown, method: string): WireError {
  if (!(err instanceof AgentError))
    return internalWireError(`internal error in ${method}: ${errorMessage(err)}; the agent log has the details`);
  const args = err.wireArgs();
  const cls = err.constructor as typeof AgentError;
  const builtin = cls.aiozmqNameIn[method] ?? cls.aiozmqName;
  const repr = `${shortWireName(err.wireName)}(${args.map(pyRepr).join(', ')})`;
  return builtin === err.wireName ? { type: err.wireName, args, repr } : { type: err.wireName, args, repr, builtin };
}

/** The wire error of a failure that is not one of ours (a handler that threw, a result that could not be encoded): the one way to build it. */
export function internalWireError(message: string): WireError {
  return toWireError(new InternalError(message), '');
}

/** The message of any thrown value. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
