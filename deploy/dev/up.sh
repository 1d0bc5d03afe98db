#!/usr/bin/env bash
# Bring up the real local services compute-agent talks to: etcd (loopback),
# dockerd, a local image registry (loopback, plain HTTP) and Redis (loopback; the event stream of modern managers). Idempotent: installs only what is missing, starts only what does not
# answer, adopts services that already answer (someone else's stay theirs).
# Works without systemd: daemons are started with setsid/nohup and survive
# this script; their pid files live in /run/compute-agent-dev/ for down.sh.
#
# Env overrides:
#   ETCD_ADDR=127.0.0.1:2379       etcd client address
#   ETCD_PEER_ADDR=127.0.0.1:2380  etcd peer address (default: client port + 1)
#                                  (a non-default ETCD_ADDR gets its own data
#                                  dir, log and pid file: etcd-HOST_PORT)
#   REDIS_ADDR=127.0.0.1:6379      Redis address (loopback; a non-default one
#                                  gets its own pid file: redis-HOST_PORT)
#   WAIT_SECS=60                   how long to wait for each service
#   DOCKERD_STORAGE_DRIVER=        force a storage driver (default: dockerd's
#                                  own choice, overlay2 where it works)
#   DOCKERD_IPTABLES=auto|true|false   auto: probe iptables, false if unusable
#   DOCKERD_USERLAND_PROXY=true    false: publish 127.0.0.1 ports with iptables
#                                  DNAT only (ports stay reachable while
#                                  dockerd is down; needs working iptables)
#   DOCKERD_EXTRA_ARGS=            appended to the dockerd command line
#   REGISTRY_ADDR=127.0.0.1:5000   image registry address (loopback: Docker
#                                  pulls from it over plain HTTP without an
#                                  insecure-registries entry)
#   SKIP_INSTALL=1                 never run apt-get
set -euo pipefail

ETCD_ADDR=${ETCD_ADDR:-127.0.0.1:2379}
ETCD_PEER_ADDR=${ETCD_PEER_ADDR:-${ETCD_ADDR%:*}:$((${ETCD_ADDR##*:} + 1))}
WAIT_SECS=${WAIT_SECS:-60}
REDIS_ADDR=${REDIS_ADDR:-127.0.0.1:6379}
DOCKERD_IPTABLES=${DOCKERD_IPTABLES:-auto}
DOCKERD_USERLAND_PROXY=${DOCKERD_USERLAND_PROXY:-true}
DOCKERD_STORAGE_DRIVER=${DOCKERD_STORAGE_DRIVER:-}
DOCKERD_EXTRA_ARGS=${DOCKERD_EXTRA_ARGS:-}
SKIP_INSTALL=${SKIP_INSTALL:-0}
REGISTRY_ADDR=${REGISTRY_ADDR:-127.0.0.1:5000}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

STATE_DIR=/var/lib/compute-agent-dev
LOG_DIR=/var/log/compute-agent-dev
RUN_DIR=/run/compute-agent-dev
if [[ $ETCD_ADDR == 127.0.0.1:2379 ]]; then ETCD_ID=etcd; else ETCD_ID=etcd-${ETCD_ADDR//[:.]/_}; fi
if [[ $REDIS_ADDR == 127.0.0.1:6379 ]]; then REDIS_ID=redis; else REDIS_ID=redis-${REDIS_ADDR//[:.]/_}; fi
PACKAGES=(etcd-server etcd-client redis-server docker.io python3-aiozmq python3-msgpack python3-docutils mmdebstrap iptables tmux supervisor docker-registry curl gcc libzmq3-dev e2fsprogs util-linux)

log() { echo "dev-up: $*" >&2; }
die() { echo "dev-up: ERROR: $*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root"
mkdir -p "$STATE_DIR" "$LOG_DIR" "$RUN_DIR"
# one up.sh at a time (two would both start a daemon)
exec 9>"$RUN_DIR/up.lock"
flock 9

# pid_alive PID: running and not a zombie (PID 1 here reaps orphans lazily,
# so a dead daemon can linger as a zombie for a few seconds).
pid_alive() {
  local st
  st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ -n $st && $st != Z* ]]
}
# pid_is PID NAME: alive and its command name is NAME (guards pid reuse)
pid_is() { pid_alive "$1" && [[ $(cat "/proc/$1/comm" 2>/dev/null) == "$2" ]]; }

fail_with_log() { # fail_with_log LOGFILE HINT
  echo "dev-up: ---- last lines of $1 ----" >&2
  # (dockerd's gRPC chatter hides the one line that matters)
  grep -v 'module=grpc' "$1" 2>/dev/null | tail -n 25 >&2 || true
  echo "dev-up: ----" >&2
  die "$2"
}

# ---------------------------------------------------------------- packages --
install_missing() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null) == installed ]] || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  [[ $SKIP_INSTALL != 1 ]] || die "missing packages: ${missing[*]} (SKIP_INSTALL=1)"
  log "installing: ${missing[*]} (apt log: $LOG_DIR/apt.log)"
  # Without systemd, keep package scripts from starting Debian's own etcd /
  # dockerd (with their own config) while installing; we start ours below.
  local guard=0
  if [[ ! -d /run/systemd/system && ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    guard=1
  fi
  local rc=0
  {
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q && apt-get install -y -q "${missing[@]}"
  } >>"$LOG_DIR/apt.log" 2>&1 || rc=$?
  ((guard)) && rm -f /usr/sbin/policy-rc.d
  ((rc == 0)) || fail_with_log "$LOG_DIR/apt.log" "apt-get failed (network to the Debian mirror? dpkg lock held by another apt?)"
}

# spawn PIDFILE LOGFILE CMD...: start CMD detached from this script
spawn() {
  local pidfile=$1 logfile=$2
  shift 2
  echo "---- $(date -Is) starting: $*" >>"$logfile"
  # setsid does not fork here (we are not a process-group leader), so $! is
  # the daemon itself. 9>&-: the daemon must not inherit our lock.
  setsid nohup "$@" >>"$logfile" 2>&1 </dev/null 9>&- &
  echo $! >"$pidfile"
}

# wait_for NAME PIDFILE LOGFILE HINT CHECK...: poll CHECK until it succeeds
wait_for() {
  local name=$1 pidfile=$2 logfile=$3 hint=$4
  shift 4
  local deadline=$((SECONDS + WAIT_SECS)) pid
  pid=$(cat "$pidfile")
  until "$@" >/dev/null 2>&1; do
    if ! pid_alive "$pid"; then
      rm -f "$pidfile"
      fail_with_log "$logfile" "$name exited during startup; $hint"
    fi
    if ((SECONDS >= deadline)); then
      fail_with_log "$logfile" "$name did not answer within ${WAIT_SECS}s (pid $pid still running); $hint"
    fi
    sleep 0.5
  done
}

# -------------------------------------------------------------------- etcd --
etcd_healthy() {
  ETCDCTL_API=3 etcdctl --endpoints="$ETCD_ADDR" --dial-timeout=2s \
    --command-timeout=3s endpoint health >/dev/null 2>&1
}

start_etcd() {
  if etcd_healthy; then
    log "etcd answers on $ETCD_ADDR"
    return 0
  fi
  local pidfile=$RUN_DIR/$ETCD_ID.pid logfile=$LOG_DIR/$ETCD_ID.log
  if [[ -f $pidfile ]] && pid_is "$(cat "$pidfile")" etcd; then
    log "etcd (pid $(cat "$pidfile")) running but not healthy yet; waiting"
  else
    log "starting etcd on $ETCD_ADDR (data $STATE_DIR/$ETCD_ID, log $logfile)"
    # env -u: etcd reads every ETCD_* variable as a flag.
    spawn "$pidfile" "$logfile" env -u ETCD_ADDR -u ETCD_PEER_ADDR \
      etcd --name compute-agent-dev \
      --data-dir "$STATE_DIR/$ETCD_ID" \
      --listen-client-urls "http://$ETCD_ADDR" \
      --advertise-client-urls "http://$ETCD_ADDR" \
      --listen-peer-urls "http://$ETCD_PEER_ADDR" \
      --initial-advertise-peer-urls "http://$ETCD_PEER_ADDR" \
      --initial-cluster "compute-agent-dev=http://$ETCD_PEER_ADDR" \
      --initial-cluster-state new \
      --auto-compaction-retention=1 \
      --logger=zap --log-outputs=stderr
  fi
  wait_for etcd "$pidfile" "$logfile" \
    "is ${ETCD_ADDR##*:} or ${ETCD_PEER_ADDR##*:} taken by another process (ss -ltnp)? stale data dir $STATE_DIR/$ETCD_ID?" \
    etcd_healthy
  log "etcd up on $ETCD_ADDR (pid $(cat "$pidfile"))"
}

# ------------------------------------------------------------------ dockerd --
docker_ok() { docker info >/dev/null 2>&1; }

iptables_usable() {
  # a nat chain we create and delete again: exercises what dockerd needs
  local chain=CA-DEV-PROBE-$$
  iptables -w -t nat -N "$chain" >/dev/null 2>&1 || return 1
  iptables -w -t nat -X "$chain" >/dev/null 2>&1
  iptables -w -t filter -L FORWARD -n >/dev/null 2>&1
}

start_dockerd() {
  local pidfile=$RUN_DIR/dockerd.pid logfile=$LOG_DIR/dockerd.log
  if docker_ok; then
    local lr
    lr=$(docker info -f '{{.LiveRestoreEnabled}}' 2>/dev/null || echo unknown)
    log "dockerd answers ($(docker info -f '{{.Driver}}' 2>/dev/null), live-restore=$lr)"
    if [[ $lr != true ]]; then
      log "WARNING: this dockerd was not started with --live-restore (the fault drills need it);" \
        "add {\"live-restore\": true} to /etc/docker/daemon.json and send it SIGHUP"
    fi
    return 0
  fi
  if [[ -f $pidfile ]] && pid_is "$(cat "$pidfile")" dockerd; then
    log "dockerd (pid $(cat "$pidfile")) running but not answering yet; waiting"
  else
    # Stale pid files of a dead (or zombie) dockerd/containerd block a restart:
    # "failed to start daemon: pid file found, ensure docker is not running".
    local f pid
    for f in /var/run/docker.pid:dockerd /var/run/docker/containerd/containerd.pid:containerd; do
      pid=$(cat "${f%%:*}" 2>/dev/null || true)
      if [[ -n $pid ]] && ! pid_is "$pid" "${f##*:}"; then rm -f "${f%%:*}"; fi
    done
    pid=$(cat /var/run/docker.pid 2>/dev/null || true)
    if [[ -n $pid ]]; then
      die "a dockerd (pid $pid) runs but 'docker info' fails: $(docker info 2>&1 | tail -n 1)"
    fi

    local args=(--live-restore)
    case $DOCKERD_IPTABLES in
      auto)
        if iptables_usable; then
          args+=(--iptables=true)
        else
          log "iptables unusable here ($(iptables -w -t nat -L -n 2>&1 | tail -n 1)); dockerd --iptables=false (docker-proxy publishes ports)"
          args+=(--iptables=false)
          DOCKERD_USERLAND_PROXY=true
        fi ;;
      true | false) args+=(--iptables="$DOCKERD_IPTABLES") ;;
      *) die "DOCKERD_IPTABLES must be auto, true or false" ;;
    esac
    args+=(--userland-proxy="$DOCKERD_USERLAND_PROXY")
    # cgroupfs: there is no systemd to delegate cgroups to; explicit so a
    # /run/systemd leftover does not make dockerd pick the systemd driver.
    args+=(--exec-opt native.cgroupdriver=cgroupfs)
    [[ -z $DOCKERD_STORAGE_DRIVER ]] || args+=(--storage-driver="$DOCKERD_STORAGE_DRIVER")
    # shellcheck disable=SC2206
    [[ -z $DOCKERD_EXTRA_ARGS ]] || args+=($DOCKERD_EXTRA_ARGS)
    log "starting dockerd ${args[*]} (log $logfile)"
    spawn "$pidfile" "$logfile" dockerd "${args[@]}"
  fi
  wait_for dockerd "$pidfile" "$logfile" \
    "see the log; try DOCKERD_STORAGE_DRIVER=vfs or DOCKERD_IPTABLES=false" \
    docker_ok
  log "dockerd up (pid $(cat "$pidfile"), storage $(docker info -f '{{.Driver}}'), cgroup v$(docker info -f '{{.CgroupVersion}}'))"
}

# ---------------------------------------------------------------- registry --
registry_ok() { curl -fsS --max-time 3 "http://$REGISTRY_ADDR/v2/" >/dev/null 2>&1; }

start_registry() {
  if registry_ok; then
    log "image registry answers on $REGISTRY_ADDR"
    return 0
  fi
  local pidfile=$RUN_DIR/registry.pid logfile=$LOG_DIR/registry.log
  if [[ -f $pidfile ]] && pid_is "$(cat "$pidfile")" docker-registry; then
    log "registry (pid $(cat "$pidfile")) running but not answering yet; waiting"
  else
    mkdir -p "$STATE_DIR/registry"
    log "starting the image registry on $REGISTRY_ADDR (storage $STATE_DIR/registry, log $logfile)"
    spawn "$pidfile" "$logfile" env REGISTRY_HTTP_ADDR="$REGISTRY_ADDR" \
      REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY="$STATE_DIR/registry" \
      docker-registry serve "$HERE/registry/config.yml"
  fi
  wait_for registry "$pidfile" "$logfile" \
    "is ${REGISTRY_ADDR##*:} taken by another process (ss -ltnp)?" \
    registry_ok
  log "image registry up on $REGISTRY_ADDR (pid $(cat "$pidfile"))"
}

# ------------------------------------------------------------------- redis --
redis_healthy() {
  [[ $(redis-cli -h "${REDIS_ADDR%:*}" -p "${REDIS_ADDR##*:}" ping 2>/dev/null) == PONG ]]
}

start_redis() {
  if redis_healthy; then
    log "redis answers on $REDIS_ADDR"
    return 0
  fi
  local pidfile=$RUN_DIR/$REDIS_ID.pid logfile=$LOG_DIR/$REDIS_ID.log
  if [[ -f $pidfile ]] && pid_is "$(cat "$pidfile")" redis-server; then
    log "redis (pid $(cat "$pidfile")) running but not answering yet; waiting"
  else
    mkdir -p "$STATE_DIR/$REDIS_ID"
    log "starting redis on $REDIS_ADDR (dir $STATE_DIR/$REDIS_ID, log $logfile)"
    # no persistence: the stream is a transport, and a dev box needs no dump files
    spawn "$pidfile" "$logfile" redis-server --bind "${REDIS_ADDR%:*}" --port "${REDIS_ADDR##*:}" \
      --dir "$STATE_DIR/$REDIS_ID" --save '' --appendonly no --daemonize no --protected-mode yes
  fi
  wait_for redis "$pidfile" "$logfile" "see the log; is the port taken (REDIS_ADDR=...)?" redis_healthy
  log "redis up on $REDIS_ADDR (pid $(cat "$pidfile"))"
}

install_missing
start_etcd
start_dockerd
start_registry
start_redis
