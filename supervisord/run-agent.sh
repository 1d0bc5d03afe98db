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
mkdir -p "${BACKEND_SCRATCH_ROOT:-/var/cache/scratches}"
exec "${NODE:-node}" --enable-source-maps dist/src/cli/agent.js "$@"
