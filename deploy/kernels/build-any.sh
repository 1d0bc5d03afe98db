#!/usr/bin/env bash
# Build the test images without this project's runner (docs/images.rst,
# "Bring your own image"; tests/integration/any-image.test.ts): plain Debian
# images as a user would bring them, made offline like build-base.sh
# (mmdebstrap + docker import), with no io.sorna.* label, so the agent mounts
# its runner environment (deploy/runner-env/build.sh) into their kernels.
#
#   compute-agent-test/any-python:bookworm  Debian minbase + python3 (no pyzmq, no msgpack)
#   compute-agent-test/any-shell:bookworm   Debian minbase, no Python at all
#   compute-agent-test/any-venv:bookworm    Python only in a venv under /opt/venv (none on PATH),
#                                           named by ai.backend.runtime-type/-path labels
#   compute-agent-test/any-jupyter:bookworm Debian's python3 + jupyter-notebook, its app named by
#                                           ai.backend.service-ports (jupyter:http:8080)
#   compute-agent-test/any-musl:fake        one file, /lib/ld-musl-x86_64.so.1: an image the agent refuses
#
#   bash deploy/kernels/build-any.sh                       # skip the images already built from this recipe
#   PUSH_REGISTRY=127.0.0.1:5000 bash deploy/kernels/build-any.sh   # also push them there
#
# Env overrides: SUITE, MIRROR, CACHE_DIR, FORCE=1, PUSH_REGISTRY.
set -euo pipefail
SUITE=${SUITE:-bookworm}
CACHE_DIR=${CACHE_DIR:-/var/cache/compute-agent-dev}
FORCE=${FORCE:-0}
apt_uris() {
  { cat /etc/apt/sources.list.d/*.sources 2>/dev/null | sed -n 's/^URIs:[[:space:]]*//p' | tr ' ' '\n'
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '$1 == "deb" {print $2}'
  } | grep '/debian' || true
}
MIRROR=${MIRROR:-$(apt_uris | awk '!/-security/' | sed -n 1p)}
SECURITY_MIRROR=${SECURITY_MIRROR:-$(apt_uris | awk '/-security/' | sed -n 1p)}
[[ -n $SECURITY_MIRROR ]] || SECURITY_MIRROR=${MIRROR%/debian}/debian-security
log() { echo "build-any: $*" >&2; }
die() { echo "build-any: ERROR: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || die "run as root (mmdebstrap root mode, docker import)"
[[ -n $MIRROR ]] || die "no Debian mirror found in /etc/apt; set MIRROR="
docker info >/dev/null 2>&1 || die "docker daemon not reachable"
DEB_CACHE=$CACHE_DIR/debs/$SUITE
mkdir -p "$DEB_CACHE"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

push() {
  [[ -n ${PUSH_REGISTRY:-} ]] || return 0
  docker tag "$1" "$PUSH_REGISTRY/$1"
  docker push "$PUSH_REGISTRY/$1" >/dev/null || die "pushing $PUSH_REGISTRY/$1 failed (is the registry up?)"
  log "pushed $PUSH_REGISTRY/$1"
}

# image NAME PACKAGES [HOOK] -- [docker import --change ...]: one image from a minbase rootfs.
image() {
  local name=$1 pkgs=$2 hook=$3
  shift 4
  local key
  key=$(printf '%s\n' "$SUITE" "$pkgs" "$hook" "$@" | sha256sum | cut -c1-16)
  if [[ $FORCE != 1 ]] && [[ $(docker image inspect -f '{{index .Config.Labels "io.compute-agent.test-recipe"}}' "$name" 2>/dev/null) == "$key" ]]; then
    log "$name is up to date"
    push "$name"
    return
  fi
  local hooks=(--customize-hook='rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*')
  [[ -n $hook ]] && hooks=(--customize-hook="$hook" "${hooks[@]}")
  # shellcheck disable=SC2016
  mmdebstrap --quiet --mode=root --variant=minbase --format=tar ${pkgs:+--include="$pkgs"} \
    --aptopt='APT::Install-Recommends "false"' --skip=download/empty \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --setup-hook='mkdir -p "$1"/var/cache/apt/archives/' --setup-hook="sync-in $DEB_CACHE /var/cache/apt/archives/" \
    --customize-hook="sync-out /var/cache/apt/archives $DEB_CACHE" "${hooks[@]}" \
    "$SUITE" "$work/$$.tar" "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" "deb $SECURITY_MIRROR $SUITE-security main" </dev/null
  docker import --change "LABEL io.compute-agent.test-recipe=\"$key\"" "$@" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' "$work/$$.tar" "$name" >/dev/null
  rm -f "$work/$$.tar"
  log "built $name"
  push "$name"
}

image compute-agent-test/any-python:bookworm python3 '' --
image compute-agent-test/any-shell:bookworm '' '' --
# The venv's own copy of the interpreter; the system's python3 and python3.11 are removed, so PATH has none.
# shellcheck disable=SC2016
image compute-agent-test/any-venv:bookworm python3 'chroot "$1" python3 -m venv --without-pip --copies /opt/venv &&
  echo "WHERE = \"venv\"" > "$1"/opt/venv/lib/python3.11/site-packages/venvmark.py &&
  rm -f "$1"/usr/bin/python3 "$1"/usr/bin/python3.11' -- \
  --change 'LABEL ai.backend.runtime-type="python" ai.backend.runtime-path="/opt/venv/bin/python3"'

# The musl image: refused at create, so it need not run.# Debian's Jupyter without this project's runner: its app (service ports) runs with the image's own programs.
image compute-agent-test/any-jupyter:bookworm python3,jupyter-notebook,python3-notebook '' -- \
  --change 'LABEL ai.backend.service-ports="jupyter:http:8080"'

musl=compute-agent-test/any-musl:fake
if [[ $FORCE == 1 ]] || ! docker image inspect "$musl" >/dev/null 2>&1; then
  mkdir -p "$work/musl/lib"
  : >"$work/musl/lib/ld-musl-x86_64.so.1"
  tar -C "$work/musl" --owner=0 --group=0 --mtime=@0 -cf "$work/musl.tar" lib
  docker import --change 'CMD ["/bin/sh"]' "$work/musl.tar" "$musl" >/dev/null
  log "built $musl"
fi
push "$musl"
