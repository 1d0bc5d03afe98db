#!/usr/bin/env bash
# Quick start, command 2: brings up the local stack and runs the whole test
# suite against the real etcd and Docker. Extra arguments go to mocha, e.g.
# a spec file: deploy/dev/test.sh dist/tests/unit/codec.test.js
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deploy/dev/prepare.sh
exec npx --no-install mocha "$@"
