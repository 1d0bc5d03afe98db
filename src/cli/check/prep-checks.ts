/**
 * The node-preparation entries of `agent check`: the start-up script's owner
 * and mode, the runner environment for images without a runner (every file
 * against its manifest), and the state of each image of the prepull list (present here,
 * missing but in the registry, or not in the registry either).
 */
import type { Check } from './types.js';
import { errorMessage } from '../../errors.js';
import { parseImageRef, resolveImage } from '../../config/lang.js';
import { registryCredentialKeys } from '../../config/etcd-keys.js';
import { readRegistryCredentials, RegistryClient } from '../../images/registry.js';
import { startupScriptProblem } from '../../node/startup.js';
import { findRunnerEnv, RUNNER_ENV_FIX } from '../../containers/runner-env.js';

export const PREP_CHECKS: Check[] = [
  {
    name: 'node start-up script',
    fix: 'make etcd reachable first',
    after: 'etcd namespace and settings',
    async run({ settings }) {
      const file = (await settings()).settings.nodeStartupScript;
      if (!file) return { ok: true, detail: 'none set (node_startup_script)' };
      const problem = await startupScriptProblem(file);
      if (problem)
        return {
          ok: false,
          detail: problem,
          fix: `make it a root-owned executable that only root can write (chown root ${file}; chmod 0755 ${file})`,
        };
      return { ok: true, detail: `${file}: root-owned, not group/world-writable` };
    },
  },
  {
    name: 'runner environment',
    fix: 'make etcd reachable first',
    after: 'etcd namespace and settings',
    async run({ settings }) {
      const root = (await settings()).settings.runnerEnvRoot;
      if (!root) return { ok: true, detail: 'none (runner_env_root is empty): images without a runner are refused' };
      const { env, problem } = await findRunnerEnv(root, true); // every file hashed: a changed environment must not reach a kernel
      if (env)
        return {
          ok: true,
          detail: `${env.dir}: ${env.entries} entries, ${(env.bytes / 2 ** 20).toFixed(1)} MiB, every file as its manifest says`,
        };
      if (problem?.startsWith('no runner environment'))
        return { ok: true, detail: `${problem}: images without a runner are refused`, warnings: [`${problem}; fix: ${RUNNER_ENV_FIX}`] };
      return { ok: false, detail: problem ?? 'unknown', fix: RUNNER_ENV_FIX };
    },
  },
  {
    name: 'prepull images',
    fix: 'make Docker and etcd reachable first',
    after: 'Docker reachable',
    async run({ settings, docker, etcd }) {
      const s = (await settings()).settings;
      if (s.prepull.length === 0) return { ok: true, detail: 'no prepull list set' };
      const registry = new RegistryClient((host) => readRegistryCredentials((key) => etcd.get(key), host), 5000);
      const states = await Promise.all(
        s.prepull.map(async (lang) => {
          let image = lang;
          try {
            image = resolveImage(lang, s.imagePrefix, s.imageAllowList);
            const present = await docker.image(image).then(
              () => true,
              () => false,
            );
            if (present) return { image, state: 'present', bad: false };
            await registry.manifest(parseImageRef(image));
            return { image, state: 'missing (in the registry: the agent pulls it at start)', bad: false };
          } catch (err) {
            return { image, state: `not in the registry (${errorMessage(err)})`, bad: true };
          }
        }),
      );
      const detail = states.map((x) => `${x.image}: ${x.state}`).join('; ');
      const missing = states.filter((x) => x.state !== 'present').map((x) => x.image);
      if (states.some((x) => x.bad))
        return {
          ok: false,
          detail,
          fix: `push the images to their registry, fix the prepull list, or set the registry credentials (${registryCredentialKeys('<host>').username}, /password)`,
        };
      return {
        ok: true,
        detail,
        warnings: missing.length
          ? [`${missing.length} prepull image(s) not here yet: ${missing.join(', ')}; fix: none needed, the agent pulls them`]
          : [],
      };
    },
  },
];
