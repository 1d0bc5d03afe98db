#!/usr/bin/env bash
# Everything the quick start needs on a fresh Debian machine, as root:
# the real services (etcd, dockerd: deploy/dev/up.sh), the npm dependencies,
# the compiled agent, and the kernel image built offline. Idempotent and
# quick when everything is already there. Used by start.sh and test.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."

log() { echo "prepare: $*" >&2; }

bash deploy/dev/up.sh

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  log "installing Node.js and npm from Debian"
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm
fi
if [[ ! -f node_modules/.package-lock.json ]] || ! cmp -s <(sed -n '/"packages"/,$p' package-lock.json) <(sed -n '/"packages"/,$p' node_modules/.package-lock.json) 2>/dev/null; then
  log "installing npm dependencies (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
fi
log "compiling"
npm run --silent build
bash deploy/kernels/build-base.sh
# The runner environment the agent mounts into images without a runner (docs/images.rst).
bash deploy/runner-env/build.sh >/dev/null
# The test suite also needs the Jupyter kernel image, a browser and Sphinx (test.sh
# sets PREPARE_TESTS=1); the quick start does not.
if [[ ${PREPARE_TESTS:-0} == 1 ]]; then
  bash deploy/kernels/build-jupyter.sh
  # The images without a runner of tests/integration/any-image.test.ts, in the local registry.
  PUSH_REGISTRY=${REGISTRY_ADDR:-127.0.0.1:5000} bash deploy/kernels/build-any.sh
  if ! command -v chromium >/dev/null; then
    log "installing Debian's chromium (the browser test)"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium
  fi
  if ! command -v sphinx-build >/dev/null; then
    log "installing Debian's python3-sphinx (the manual, built by the docs test)"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-sphinx
  fi
fi
