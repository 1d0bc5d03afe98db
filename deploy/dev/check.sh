#!/usr/bin/env bash
# Check, for real, that the services from deploy/dev/up.sh do what the agent
# needs: etcd put/get/delete; a container from the locally built kernel image
# starts with a memory limit and a cpuset applied (seen in its cgroup and
# enforced: over-allocation is OOM-killed) and a port published on 127.0.0.1
# answers from the host. Needs the image: bash deploy/kernels/build-base.sh
# Redis takes an XADD to a stream of its own and gives it back.
# Env: ETCD_ADDR=127.0.0.1:2379, REDIS_ADDR=127.0.0.1:6379, IMAGE=lablup/kernel-python:3-debian
set -euo pipefail

ETCD_ADDR=${ETCD_ADDR:-127.0.0.1:2379}
REDIS_ADDR=${REDIS_ADDR:-127.0.0.1:6379}
IMAGE=${IMAGE:-lablup/kernel-python:3-debian}
NAME=compute-agent-dev-check-$$

log() { echo "dev-check: $*" >&2; }
die() { echo "dev-check: FAIL: $*" >&2; exit 1; }

# etcd ----------------------------------------------------------------------
etcdctl_() { ETCDCTL_API=3 etcdctl --endpoints="$ETCD_ADDR" --dial-timeout=2s --command-timeout=3s "$@"; }
key=/compute-agent-dev/check/$$
etcdctl_ put "$key" ok >/dev/null || die "etcd put on $ETCD_ADDR"
[[ $(etcdctl_ get --print-value-only "$key") == ok ]] || die "etcd get"
etcdctl_ del "$key" >/dev/null || die "etcd del"
log "etcd ok ($ETCD_ADDR)"

# redis ---------------------------------------------------------------------
redis_() { timeout 5 redis-cli -h "${REDIS_ADDR%:*}" -p "${REDIS_ADDR##*:}" -n 4 "$@"; }
stream=compute-agent-dev-check-$$
redis_ XADD "$stream" '*' name check >/dev/null || die "redis XADD on $REDIS_ADDR"
[[ $(redis_ XLEN "$stream") == 1 ]] || die "redis XLEN"
redis_ DEL "$stream" >/dev/null || die "redis DEL"
log "redis ok ($REDIS_ADDR)"

# docker --------------------------------------------------------------------
docker image inspect "$IMAGE" >/dev/null 2>&1 || die "no image $IMAGE (bash deploy/kernels/build-base.sh)"
trap 'docker rm -f "$NAME" >/dev/null 2>&1 || true' EXIT
docker run -d --name "$NAME" --memory 64m --cpuset-cpus 0 -p 127.0.0.1::2000 "$IMAGE" \
  python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 2000)); s.listen()
while True:
    c, _ = s.accept(); c.sendall(b"pong\n"); c.close()' >/dev/null || die "docker run"
id=$(docker inspect -f '{{.Id}}' "$NAME")
hostport=$(docker port "$NAME" 2000/tcp | head -n 1)
[[ -n $hostport ]] || die "no published port"

reply=
for _ in $(seq 50); do
  reply=$(timeout 2 bash -c "exec 3<>/dev/tcp/${hostport%:*}/${hostport##*:} && head -n 1 <&3" 2>/dev/null || true)
  [[ $reply == pong ]] && break
  sleep 0.2
done
[[ $reply == pong ]] || die "published port $hostport did not answer"

in_ctr=$(docker exec "$NAME" python3 -c '
import os
def rd(*ps):
    for p in ps:
        try: return open(p).read().split()[0]
        except OSError: pass
    return "?"
print(rd("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory.max"),
      rd("/sys/fs/cgroup/cpuset/cpuset.cpus", "/sys/fs/cgroup/cpuset.cpus.effective"),
      sorted(os.sched_getaffinity(0)))')
[[ $in_ctr == "67108864 0 [0]" ]] || die "limits inside the container: $in_ctr (want 67108864 0 [0])"
host_mem=$(cat "/sys/fs/cgroup/memory/docker/$id/memory.limit_in_bytes" 2>/dev/null ||
  cat "/sys/fs/cgroup/system.slice/docker-$id.scope/memory.max" 2>/dev/null || echo "?")
docker run --rm --memory 64m "$IMAGE" python3 -c 'b = bytearray(256 << 20)' >/dev/null 2>&1 && rc=0 || rc=$?
[[ $rc == 137 ]] || die "allocating 256 MiB under --memory 64m exited $rc (want 137, OOM-killed)"
log "docker ok: port $hostport answers; memory 64m + cpuset 0 applied (host cgroup memory limit $host_mem) and enforced (OOM exit 137)"
