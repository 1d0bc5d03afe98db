#!/usr/bin/env bash
# Check compute-agent's GPU support on a machine with an NVIDIA GPU, for real.
#
# 1. `agent gpus`: the agent's detection against the real driver; prints the
#    devices, the path containers would take (runtime, device-nodes, none)
#    with why, and the Docker arguments for one device.
# 2. Where Docker and etcd answer too: builds a kernel image of its own that
#    opts in to GPUs (FROM $BASE_IMAGE, label ai.backend.accelerators=cuda),
#    starts an agent of its own (own namespace, agent id, port, scratch root),
#    creates a kernel with gpu_slot 1 through it (agentctl run --gpu 1) and
#    runs `nvidia-smi -L` inside; then removes everything it made.
#
# Exit codes: 0 every step passed (or step 2 was skipped, saying why);
#             1 a step failed; 2 no usable GPU here (the CPU fallback applies).
# Env: ETCD_ADDR=127.0.0.1:2379  BASE_IMAGE=lablup/kernel-python:3-debian
#      AGENT_PORT=<a free port>  WAIT_SECS=60
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ETCD_ADDR=${ETCD_ADDR:-127.0.0.1:2379}
BASE_IMAGE=${BASE_IMAGE:-lablup/kernel-python:3-debian}
WAIT_SECS=${WAIT_SECS:-60}

log() { echo "gpu-check: $*" >&2; }
die() { echo "gpu-check: FAIL: $*" >&2; exit 1; }

cd "$ROOT"
command -v node >/dev/null || die "node is not installed (deploy/dev/prepare.sh installs it)"
[[ -f dist/src/cli/agent.js ]] || npm run --silent build || die "the build failed (npm run build)"

# 1. Detection ----------------------------------------------------------------
log "detection (node dist/src/cli/agent.js gpus):"
set +e
node dist/src/cli/agent.js gpus
rc=$?
set -e
if ((rc != 0)); then
  log "no usable NVIDIA GPU on this machine: the agent runs the CPU fallback here (gpu_slots 0;"
  log "a kernel asking for gpu_slot > 0 is refused). The reason and the fix are printed above."
  exit 2
fi

# 2. A kernel with gpu_slot 1, through the agent ----------------------------------
if ! docker info >/dev/null 2>&1; then
  log "Docker does not answer: skipping the kernel check (start dockerd, e.g. deploy/dev/up.sh)"
  exit 0
fi
etcdctl_() { ETCDCTL_API=3 etcdctl --endpoints="$ETCD_ADDR" --dial-timeout=2s --command-timeout=3s "$@"; }
if ! command -v etcdctl >/dev/null || ! etcdctl_ endpoint health >/dev/null 2>&1; then
  log "etcd does not answer at $ETCD_ADDR (or etcdctl is missing): skipping the kernel check (deploy/dev/up.sh starts it)"
  exit 0
fi
docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 ||
  die "no base image $BASE_IMAGE: build one under a tag of its own (IMAGE=<tag> deploy/kernels/build-base.sh) and set BASE_IMAGE"

TAG=$$-$RANDOM
NS=gpu-check-$TAG
AGENT_ID=i-gpu-check-$TAG
PREFIX=gpu-check-$TAG/kernel-
IMAGE=${PREFIX}python:cuda
SCRATCH=$(mktemp -d /tmp/gpu-check-scratch.XXXXXX)
AGENT_LOG=$(mktemp /tmp/gpu-check-agent.XXXXXX.log)
PORT=${AGENT_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
AGENT_PID=

cleanup() {
  [[ -n $AGENT_PID ]] && kill "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null
  docker ps -aq --filter "label=io.compute-agent.agent=$AGENT_ID" | xargs -r docker rm -f >/dev/null 2>&1 || true
  docker rmi -f "$IMAGE" >/dev/null 2>&1 || true
  etcdctl_ del --prefix "/sorna/$NS/" >/dev/null 2>&1 || true
  rm -rf "$SCRATCH" "$AGENT_LOG"
}
trap cleanup EXIT

printf 'FROM %s\nLABEL ai.backend.accelerators=cuda\n' "$BASE_IMAGE" | docker build -q -t "$IMAGE" - >/dev/null 2>&1 ||
  die "could not build $IMAGE from $BASE_IMAGE"
etcdctl_ put "/sorna/$NS/config/agent/image_prefix" "$PREFIX" >/dev/null

log "starting an agent of its own (namespace $NS, port $PORT)"
node dist/src/cli/agent.js --etcd-addr "$ETCD_ADDR" --namespace "$NS" --agent-id "$AGENT_ID" --agent-port "$PORT" \
  --bind-host 127.0.0.1 --agent-host-override 127.0.0.1 --scratch-root "$SCRATCH" --metrics '' --log-format json \
  >"$AGENT_LOG" 2>&1 &
AGENT_PID=$!
for ((i = 0; i < WAIT_SECS * 5; i++)); do
  grep -q '"message":"agent running"' "$AGENT_LOG" && break
  kill -0 "$AGENT_PID" 2>/dev/null || { tail -n 20 "$AGENT_LOG" >&2; die "the agent exited while starting"; }
  sleep 0.2
done
grep -q '"message":"agent running"' "$AGENT_LOG" || { tail -n 20 "$AGENT_LOG" >&2; die "the agent did not start within $WAIT_SECS s"; }
grep -E '"component":"gpus"' "$AGENT_LOG" | sed 's/^/gpu-check: agent said: /' >&2 || true

CODE='
import shutil, subprocess, os
exe = shutil.which("nvidia-smi") or "/usr/local/nvidia/bin/nvidia-smi"
print("CUDA_VISIBLE_DEVICES=" + os.environ.get("CUDA_VISIBLE_DEVICES", ""))
r = subprocess.run([exe, "-L"], capture_output=True, text=True)
print(r.stdout.strip() or r.stderr.strip())
raise SystemExit(r.returncode)
'
log "creating a kernel with gpu_slot 1 and running nvidia-smi -L inside it:"
if node dist/src/cli/agentctl.js --agent "tcp://127.0.0.1:$PORT" run --gpu 1 python:cuda "$CODE"; then
  log "PASS: the kernel saw its GPU"
else
  tail -n 20 "$AGENT_LOG" >&2
  die "the GPU kernel did not run nvidia-smi -L (the agent's last log lines are above)"
fi
