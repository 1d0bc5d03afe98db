#!/usr/bin/env bash
# The whole test suite in two parts (.mocharc.cjs), against the running
# stack: every file but a few four at a time (mocha's parallel mode), then
# the files that must have the machine to themselves. Extra arguments go to
# mocha (both parts), e.g. --grep interop. The last line adds both parts up;
# the exit status is non-zero when either failed. deploy/dev/test.sh (CI)
# and `npm test` run it; `npx mocha` runs the same files in one process.
set -uo pipefail
cd "$(dirname "$0")/.."
summary=$(mktemp)
trap 'rm -f "$summary"' EXIT
start=$SECONDS
status=0
TEST_PART=parallel TEST_SUMMARY=$summary npx --no-install mocha "$@" || status=$?
TEST_PART=alone TEST_SUMMARY=$summary npx --no-install mocha "$@" || status=$?
# a part that ended before its reporter wrote its counts counts as failed
[ "$(wc -l <"$summary")" -eq 2 ] || status=1
# the time first, then the counts alone on the last line (the closing line tools read)
awk -v s="$((SECONDS - start))" '{ p += $1; f += $2; k += $3 } END { printf "\nsuite time: %d min %d s\nsuite: %d passed, %d failed, %d skipped\n", s / 60, s % 60, p, f, k }' "$summary"
exit "$status"
