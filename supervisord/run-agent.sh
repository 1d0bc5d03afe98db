#!/usr/bin/env bash
# Run script of the compute agent for supervisord (supervisord/compute-agent.conf)
# and systemd (deploy/systemd/compute-agent.service).
#
# Reads the env file ${COMPUTE_AGENT_ENV:-/etc/compute-agent/agent.env} if it
# exists (KEY=VALUE lines of BACKEND_* settings, see README.rst; its values
# win over the environment's), creates the scratch root if it is missing, and
# execs the agent: exec, so that the stop signal reaches node directly and
# node leads the process group. Extra arguments go to the agent, e.g.
# `run-agent.sh check` runs the preflight checklist with the same settings.
#
# `run-agent.sh probe livez|readyz [WAIT_SECONDS]` asks the agent's health
# endpoint on its metrics port (BACKEND_METRICS_PORT) instead, prints its JSON
# (what failed and the fix) and exits 0 when it answers 200, 1 otherwise
# (2: no metrics port set); with WAIT_SECONDS it asks again each second until
# then. For monitors and the systemd unit (docs/observability.rst).
set -euo pipefail
env_file=${COMPUTE_AGENT_ENV:-/etc/compute-agent/agent.env}
if [[ -f $env_file ]]; then
  set -a
  # shellcheck disable=SC1090
  . "$env_file"
  set +a
fi
export BACKEND_LOG_FORMAT=${BACKEND_LOG_FORMAT:-json}
cd "$(dirname "$0")/.."
if [[ ${1:-} == probe ]]; then
  route=${2:-livez}
  [[ $route == livez || $route == readyz ]] || { echo "run-agent.sh probe: livez or readyz, not $route" >&2; exit 2; }
  port=${BACKEND_METRICS_PORT:-0}
  if [[ $port == 0 ]]; then
    echo "run-agent.sh probe: BACKEND_METRICS_PORT is not set: /$route is served on the metrics port" >&2
    exit 2
  fi
  host=${BACKEND_BIND_HOST:-*}
  [[ $host == '*' ]] && host=127.0.0.1
  [[ $host == *:* ]] && host="[$host]"
  exec "${NODE:-node}" -e '
    const [url, wait] = [process.argv[1], Number(process.argv[2])];
    const until = Date.now() + wait * 1000;
    const once = () => fetch(url, { signal: AbortSignal.timeout(3000) }).then(
      async (r) => ({ ok: r.ok, text: await r.text() }),
      (e) => ({ ok: false, text: `${url}: ${e.message}${e.cause ? ` (${e.cause.code ?? e.cause.message})` : ""}\n` }),
    );
    (async () => {
      for (;;) {
        const r = await once();
        if (r.ok || Date.now() >= until) {
          process.stdout.write(r.text);
          process.exit(r.ok ? 0 : 1);
        }
        await new Promise((t) => setTimeout(t, 1000));
      }
    })();
  ' "http://$host:$port/$route" "${3:-0}"
fi
mkdir -p "${BACKEND_SCRATCH_ROOT:-/var/cache/scratches}"
exec "${NODE:-node}" --enable-source-maps dist/src/cli/agent.js "$@"
