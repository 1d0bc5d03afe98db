#!/usr/bin/env bash
# Build the kernel base image without any image registry: mmdebstrap makes a
# small Debian root filesystem from Debian's apt mirror, `docker import` turns
# it into an image with the labels the agent reads.
#
#   bash deploy/kernels/build-base.sh            # skip if the image is built from this recipe
#   FORCE=1 bash deploy/kernels/build-base.sh    # rebuild (cached rootfs -> seconds)
#
# Env overrides: IMAGE, SUITE, VARIANT, PACKAGES, EXTRA_PACKAGES, MIRROR, SECURITY_MIRROR,
#   CACHE_DIR, KERNEL_SRC, KERNEL_CMD (JSON array), FORCE=1, NO_CACHE=1,
#   SKIP_SMOKE=1, SERVICE_PORTS (the image's apps, e.g. jupyter:http:8080, put in
#   its ai.backend.service-ports label; docs/service-ports.rst), PUSH_REGISTRY=127.0.0.1:5000 (also push the image there as
#   <registry>/<image>, e.g. to the registry of deploy/dev/up.sh).
#
# Anything under deploy/kernels/python/ (KERNEL_SRC) is copied into the rootfs
# at /opt/kernel/ by an mmdebstrap customize hook (files keep their modes); if
# it holds an executable `entrypoint.sh`, that becomes the image's CMD (run
# under tini). The rootfs tarball is cached under CACHE_DIR keyed by the
# whole mmdebstrap command line (package list, suite, variant, mirrors, hooks)
# and KERNEL_SRC's contents;
# downloaded .debs are cached too, so a changed runner file rebuilds without
# downloading anything.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
IMAGE=${IMAGE:-lablup/kernel-python:3-debian}
SUITE=${SUITE:-bookworm}
VARIANT=${VARIANT:-minbase}
# openssh: ssh among the kernels of a session (docs/sessions.rst), its sshd run by the runner as the kernel user
PACKAGES=${PACKAGES:-python3 python3-zmq python3-msgpack bash procps coreutils tini openssh-client openssh-server}
PACKAGES="$PACKAGES ${EXTRA_PACKAGES:-}"  # the base list plus an image's own (build-jupyter.sh)
# The mirrors default to the ones this machine's apt already uses.
apt_uris() { # every repository URI of this machine's apt sources, one a line
  { cat /etc/apt/sources.list.d/*.sources 2>/dev/null | sed -n 's/^URIs:[[:space:]]*//p' | tr ' ' '\n'
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '$1 == "deb" {print $2}'
  } || true
}
MIRROR=${MIRROR:-$(apt_uris | awk '!/-security/' | sed -n 1p)}
SECURITY_MIRROR=${SECURITY_MIRROR:-$(apt_uris | awk '/-security/' | sed -n 1p)}
[[ -n $MIRROR ]] || { echo "build-base: no Debian mirror found in /etc/apt; set MIRROR=" >&2; exit 1; }
[[ -n $SECURITY_MIRROR ]] || SECURITY_MIRROR=${MIRROR%/debian}/debian-security
CACHE_DIR=${CACHE_DIR:-/var/cache/compute-agent-dev}
KERNEL_SRC=${KERNEL_SRC:-$HERE/python}
FORCE=${FORCE:-0}
NO_CACHE=${NO_CACHE:-0}
SKIP_SMOKE=${SKIP_SMOKE:-0}
WORK_UID=${WORK_UID:-1000}
SERVICE_PORTS=${SERVICE_PORTS:-}

log() { echo "build-base: $*" >&2; }
die() { echo "build-base: ERROR: $*" >&2; exit 1; }

# push_image: with PUSH_REGISTRY set, tag the image <registry>/<image> and push it
push_image() {
  [[ -n ${PUSH_REGISTRY:-} ]] || return 0
  docker tag "$IMAGE" "$PUSH_REGISTRY/$IMAGE"
  docker push "$PUSH_REGISTRY/$IMAGE" >/dev/null || die "pushing $PUSH_REGISTRY/$IMAGE failed (is the registry up? deploy/dev/up.sh starts one)"
  log "pushed $PUSH_REGISTRY/$IMAGE"
}

[[ $(id -u) -eq 0 ]] || die "run as root (mmdebstrap root mode, docker import)"

if ! docker info >/dev/null 2>&1; then
  die "docker daemon not reachable: start dockerd (systemctl start docker; on a dev machine: bash deploy/dev/up.sh)"
fi

if ! command -v mmdebstrap >/dev/null 2>&1; then
  log "installing mmdebstrap"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq mmdebstrap >/dev/null
fi

# Sorted, de-duplicated package list: the cache key must not depend on order.
read -r -a pkgs <<<"$PACKAGES"
PKG_LIST=$(printf '%s\n' "${pkgs[@]}" | sort -u | paste -sd, -)

kernel_src_hash() {
  if [[ -d $KERNEL_SRC ]]; then
    (cd "$KERNEL_SRC" && find . -type f -print0 | LC_ALL=C sort -z |
      xargs -0 -r stat -c '%n %a' && find . -type f -print0 | LC_ALL=C sort -z |
      xargs -0 -r sha256sum) | sha256sum | cut -c1-16
  else
    echo none
  fi
}

ROOTFS_DIR=$CACHE_DIR/kernels
DEB_CACHE=$CACHE_DIR/debs/$SUITE
mkdir -p "$ROOTFS_DIR" "$DEB_CACHE"

# The mmdebstrap command line, less the output path. Its text (plus the
# contents of KERNEL_SRC) is the cache key, so any recipe change rebuilds.
# Single quotes on purpose: mmdebstrap passes the chroot path as $1.
# shellcheck disable=SC2016,SC2054
mm_args=(
  --quiet --mode=root --variant="$VARIANT" --format=tar
  --include="$PKG_LIST"
  --aptopt='APT::Install-Recommends "false"'
  --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-include=/usr/share/locale/locale.alias'
  --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright'
  # reuse downloaded .debs between builds (no re-download on a cache miss)
  --skip=download/empty,essential/unlink
  --setup-hook='mkdir -p "$1"/var/cache/apt/archives/'
  --setup-hook="sync-in $DEB_CACHE /var/cache/apt/archives/"
  --customize-hook="sync-out /var/cache/apt/archives $DEB_CACHE"
  --customize-hook='rm -f "$1"/var/cache/apt/archives/*.deb'
  # the unprivileged user kernels run as (uid-match can remap it later)
  --customize-hook="chroot \"\$1\" groupadd -g $WORK_UID work"
  --customize-hook="chroot \"\$1\" useradd -u $WORK_UID -g $WORK_UID -d /home/work -m -s /bin/bash work"
  --customize-hook='mkdir -p "$1"/opt/kernel'
  # no host keys shared by every kernel of the image (a session's sshd makes its own), no setuid helper
  --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*'
  --customize-hook='chmod u-s "$1"/usr/lib/openssh/ssh-keysign 2>/dev/null || true'
)
if [[ -d $KERNEL_SRC ]]; then
  mm_args+=(--customize-hook="sync-in $KERNEL_SRC /opt/kernel")
fi
sources=(
  "deb $MIRROR $SUITE main"
  "deb $MIRROR $SUITE-updates main"
  "deb $SECURITY_MIRROR $SUITE-security main"
)

KEY=$( {
  # The checkout's path is not part of the recipe (kernel_src_hash covers the files).
  printf '%s\n' "${mm_args[@]//"$KERNEL_SRC"/KERNEL_SRC}" "$SUITE" "${sources[@]}"
  echo "kernel_src=$(kernel_src_hash)"
  echo "service_ports=$SERVICE_PORTS"
} | sha256sum | cut -c1-16)
TARBALL=$ROOTFS_DIR/rootfs-$SUITE-$VARIANT-$KEY.tar

# Skip only when the image was built from this very recipe (packages, mirrors,
# runner files): a changed runner must not leave a stale image behind.
if [[ $FORCE != 1 ]] && [[ $(docker image inspect -f '{{index .Config.Labels "io.compute-agent.rootfs-key"}}' "$IMAGE" 2>/dev/null) == "$KEY" ]]; then
  log "$IMAGE is up to date (recipe $KEY); skipping (FORCE=1 to rebuild)"
  push_image
  exit 0
fi

# One build at a time per cache dir.
exec 9>"$ROOTFS_DIR/.lock"
flock 9

if [[ $NO_CACHE == 1 ]]; then rm -f "$TARBALL"; fi

if [[ -s $TARBALL ]]; then
  log "using cached rootfs $TARBALL"
else
  log "mmdebstrap $SUITE ($VARIANT: $PKG_LIST) -> $TARBALL"
  tmp=$TARBALL.tmp.$$
  trap 'rm -f "$tmp"' EXIT
  # stdin from /dev/null: mmdebstrap would otherwise read sources from a pipe.
  mmdebstrap "${mm_args[@]}" "$SUITE" "$tmp" "${sources[@]}" </dev/null
  mv -f "$tmp" "$TARBALL"
  trap - EXIT
  # keep the 3 newest rootfs tarballs
  # shellcheck disable=SC2012
  ls -1t "$ROOTFS_DIR"/rootfs-*.tar 2>/dev/null | tail -n +4 | xargs -r rm -f
fi

# Default command: the runner's entrypoint once it exists, else idle forever.
if [[ -z ${KERNEL_CMD:-} ]]; then
  if [[ -x $KERNEL_SRC/entrypoint.sh ]]; then
    KERNEL_CMD='["/opt/kernel/entrypoint.sh"]'
  else
    KERNEL_CMD='["/bin/sh","-c","exec sleep infinity"]'
  fi
fi
if [[ " ${pkgs[*]} " == *" tini "* ]]; then
  ENTRYPOINT='["/usr/bin/tini","-g","--"]'
else
  ENTRYPOINT='[]'
fi

# The apps of the image (docs/service-ports.rst): their label, and their ports exposed.
service_changes=()
if [[ -n $SERVICE_PORTS ]]; then
  service_changes+=(--change "LABEL ai.backend.service-ports=\"$SERVICE_PORTS\"")
  for item in ${SERVICE_PORTS//,/ }; do service_changes+=(--change "EXPOSE ${item##*:}"); done
fi

old_id=$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)
log "docker import -> $IMAGE"
new_id=$(docker import \
  --change 'LABEL io.sorna.version="2"' \
  --change 'LABEL io.sorna.timeout="0"' \
  --change 'LABEL io.sorna.features="query batch user-input tty uid-match"' \
  --change 'LABEL io.sorna.envs.corecount="OPENBLAS_NUM_THREADS,OMP_NUM_THREADS,NPROC"' \
  --change "LABEL io.compute-agent.rootfs-key=\"$KEY\"" \
  "${service_changes[@]}" \
  --change 'EXPOSE 2000 2001 2002 2003' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8 PYTHONUNBUFFERED=1' \
  --change 'WORKDIR /home/work' \
  --change "ENTRYPOINT $ENTRYPOINT" \
  --change "CMD $KERNEL_CMD" \
  "$TARBALL" "$IMAGE")
if [[ -n $old_id && $old_id != "$new_id" ]]; then
  docker image rm "$old_id" >/dev/null 2>&1 || true  # still in use: keep it
fi

if [[ $SKIP_SMOKE != 1 ]]; then
  docker run --rm --network none "$IMAGE" \
    python3 -c 'import zmq, msgpack, os; assert os.getcwd() == "/home/work"' \
    || die "smoke test of $IMAGE failed"
fi
log "built $IMAGE ($new_id)"
push_image
