#!/usr/bin/env bash
# Stop what deploy/dev/up.sh started (pid files in /run/compute-agent-dev/).
# Services up.sh merely adopted (already running, no pid file of ours) are left
# alone. dockerd runs with --live-restore, so running containers keep running
# (under their containerd shims) and are picked up again by the next up.sh;
# their ports published through docker-proxy are unreachable meanwhile.
# Env: STOP_TIMEOUT=30 seconds before SIGKILL.
set -euo pipefail

RUN_DIR=/run/compute-agent-dev
STOP_TIMEOUT=${STOP_TIMEOUT:-30}

log() { echo "dev-down: $*" >&2; }

pid_alive() {
  local st
  st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ -n $st && $st != Z* ]]
}
pid_is() { pid_alive "$1" && [[ $(cat "/proc/$1/comm" 2>/dev/null) == "$2" ]]; }

stop() { # stop PIDFILE NAME (NAME: the process's comm)
  local pidfile=$1 name=$2 pid
  [[ -f $pidfile ]] || return 0
  pid=$(cat "$pidfile")
  if ! pid_is "$pid" "$name"; then
    log "$name (pid $pid) not running; removing stale pid file"
    rm -f "$pidfile"
    return 0
  fi
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT))
  while pid_alive "$pid"; do
    if ((SECONDS >= deadline)); then
      log "$name (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT}s; SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
      break
    fi
    sleep 0.2
  done
  rm -f "$pidfile"
}

[[ $(id -u) -eq 0 ]] || { log "run as root"; exit 1; }
stop "$RUN_DIR/registry.pid" docker-registry
stop "$RUN_DIR/dockerd.pid" dockerd
# a SIGKILLed dockerd leaves its pid file behind, and it blocks the next start
pid=$(cat /var/run/docker.pid 2>/dev/null || true)
if [[ -n $pid ]] && ! pid_is "$pid" dockerd; then rm -f /var/run/docker.pid; fi
for f in "$RUN_DIR"/etcd*.pid; do  # etcd.pid, and etcd-HOST_PORT.pid for other ETCD_ADDRs
  if [[ -e $f ]]; then stop "$f" etcd; fi
done
for f in "$RUN_DIR"/redis*.pid; do  # redis.pid, and redis-HOST_PORT.pid for other REDIS_ADDRs
  if [[ -e $f ]]; then stop "$f" redis-server; fi
done
