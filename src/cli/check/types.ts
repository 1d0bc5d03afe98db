/**
 * The shapes of `agent check`: one check, what it may look at and what it
 * answers. Kept apart so that the lists of checks (checks.ts, prep-checks.ts)
 * both use them without importing each other.
 */
import type { AgentOptions } from '../../config/options.js';
import type { CompiledSettings } from '../../config/settings.js';
import type { EtcdStore } from '../../adapters/etcd.js';
import type { DockerEngine } from '../../adapters/docker.js';

/** The result of one check, as printed (and, reshaped by `checkDocument`, as `--json` gives it). */
export interface CheckResult {
  name: string;
  ok: boolean;
  /** What was found, e.g. `Docker 20.10.24` or the error. */
  detail: string;
  /** What to do about a failure; empty when ok. */
  fix: string;
  /** Things that pass but deserve a look (e.g. a protection turned off), each `<what>; fix: <what to do>`. */
  warnings: string[];
}

/** What a check may look at: the validated flags and the real etcd and Docker. */
export interface CheckContext {
  options: AgentOptions;
  etcd: EtcdStore;
  docker: DockerEngine;
  /** The etcd settings of this agent (read once, node values winning); rejects when etcd cannot be read. */
  settings(): Promise<CompiledSettings>;
}

/** One entry of the checklist. `run` may throw: that is a failure whose detail is the error. */
export interface Check {
  name: string;
  /** The fix printed when `run` throws instead of answering. */
  fix: string;
  /** The name of an earlier check that must pass first; when it failed, this one is reported as not checked. */
  after?: string;
  run(ctx: CheckContext): Promise<{ ok: boolean; detail: string; fix?: string; warnings?: string[] }>;
}
