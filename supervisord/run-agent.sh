#!/usr/bin/env bash
# Run script for supervisord: creates the scratch root if missing and execs the
# agent (exec, so that supervisord's SIGTERM reaches node directly). Flags come
# from BACKEND_* environment variables (see README.rst); extra arguments pass through.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p "${BACKEND_SCRATCH_ROOT:-/var/cache/scratches}" /var/log/compute-agent
exec node --enable-source-maps dist/src/cli/agent.js --log-format json "$@"
