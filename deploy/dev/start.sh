#!/usr/bin/env bash
# Quick start, command 1: brings up the local stack (etcd, dockerd, the kernel
# image) and runs the agent in the foreground; Ctrl-C stops it cleanly.
# Extra arguments go to the agent, e.g. --log-level debug.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deploy/dev/prepare.sh
SCRATCH_ROOT=${BACKEND_SCRATCH_ROOT:-/var/cache/scratches}
mkdir -p "$SCRATCH_ROOT"
exec node --enable-source-maps dist/src/cli/agent.js --scratch-root "$SCRATCH_ROOT" "$@"
