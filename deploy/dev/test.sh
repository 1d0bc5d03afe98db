#!/usr/bin/env bash
# Quick start, command 2: brings up the local stack and runs the whole test
# suite against the real etcd and Docker (tests/run-suite.sh: two files at a
# time, then those that must run alone), after npm run check (layers, unused
# exports, format, lint). Extra arguments go to mocha, e.g.
# deploy/dev/test.sh --grep interop
set -euo pipefail
cd "$(dirname "$0")/../.."
PREPARE_TESTS=1 bash deploy/dev/prepare.sh
# the layers, unused exports, the layout and lint (npm run check) before any test
npm run --silent check
exec bash tests/run-suite.sh "$@"
