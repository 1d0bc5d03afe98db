#!/usr/bin/env bash
# Build the runner environment the agent mounts into kernel images that carry
# no runner of their own (docs/images.rst, "Bring your own image"): a
# self-contained tree made from Debian packages, with its own dynamic loader,
# glibc and libraries, Python 3 with its standard library, pyzmq and msgpack,
# a static busybox (the entrypoint's shell and tools) and the runner's files
# (deploy/kernels/python/*.py, service-defs/), so that it runs in an image
# whatever that image's glibc or Python is, and whether it has Python at all.
#
#   bash deploy/runner-env/build.sh                 # installs under /var/lib/compute-agent/runner
#   ROOT=/some/dir bash deploy/runner-env/build.sh  # elsewhere (the agent's runner_env_root)
#
# Env overrides: ROOT, SUITE, MIRROR, SECURITY_MIRROR, CACHE_DIR, KERNEL_SRC, FORCE=1 (rebuild even
# when this recipe's environment is installed).
#
# The tree is content-addressed: ROOT/<digest>, the digest the first 24 hex
# digits of the SHA-256 of its MANIFEST (one line per entry, sorted: type,
# mode, size, SHA-256 or link target, path). Every mtime is set to 0 and the
# bytecode is compiled with unchecked hashes, so a rebuild from the same
# packages and runner files gives the same digest. An existing ROOT/<digest>
# is kept as it is. Prints the installed path on stdout.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=${ROOT:-/var/lib/compute-agent/runner}
SUITE=${SUITE:-bookworm}
CACHE_DIR=${CACHE_DIR:-/var/cache/compute-agent-dev}
KERNEL_SRC=${KERNEL_SRC:-$HERE/../kernels/python}
PACKAGES=python3.11,python3-zmq,python3-msgpack,busybox-static
apt_uris() {
  { cat /etc/apt/sources.list.d/*.sources 2>/dev/null | sed -n 's/^URIs:[[:space:]]*//p' | tr ' ' '\n'
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '$1 == "deb" {print $2}'
  } | grep '/debian' || true
}
MIRROR=${MIRROR:-$(apt_uris | awk '!/-security/' | sed -n 1p)}
SECURITY_MIRROR=${SECURITY_MIRROR:-$(apt_uris | awk '/-security/' | sed -n 1p)}
[[ -n $SECURITY_MIRROR ]] || SECURITY_MIRROR=${MIRROR%/debian}/debian-security

log() { echo "runner-env: $*" >&2; }
die() { echo "runner-env: ERROR: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || die "run as root (mmdebstrap root mode)"
[[ -n $MIRROR ]] || die "no Debian mirror found in /etc/apt; set MIRROR="
if ! command -v mmdebstrap >/dev/null 2>&1; then
  log "installing mmdebstrap"
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
fi

t0=$(date +%s)
DEB_CACHE=$CACHE_DIR/debs/$SUITE
mkdir -p "$ROOT" "$DEB_CACHE"

# Skip the build when this recipe (this script, the entrypoint, the runner's files,
# the packages and mirrors) built an environment that is still installed (FORCE=1 rebuilds).
recipe=$( { cat "$HERE/build.sh" "$HERE/entrypoint.sh" "$HERE/drop.py"
  (cd "$KERNEL_SRC" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
  echo "$PACKAGES $SUITE $MIRROR $SECURITY_MIRROR"; } | sha256sum | cut -c1-16)
built=$(cat "$ROOT/.recipe-$recipe" 2>/dev/null || true)
if [[ ${FORCE:-0} != 1 && -n $built && -f $ROOT/$built/MANIFEST ]] &&
  [[ $(sha256sum <"$ROOT/$built/MANIFEST" | cut -c1-24) == "$built" ]]; then
  touch "$ROOT/$built.installed"
  log "$ROOT/$built is up to date (recipe $recipe); FORCE=1 rebuilds"
  echo "$ROOT/$built"
  exit 0
fi
work=$(mktemp -d "$ROOT/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
x=$work/extract
env=$work/env

# Extract (never install: no maintainer script runs) the packages and their dependencies.
# shellcheck disable=SC2016
mmdebstrap --quiet --mode=root --variant=extract --format=directory --include="$PACKAGES" \
  --aptopt='APT::Install-Recommends "false"' --skip=download/empty \
  --setup-hook='mkdir -p "$1"/var/cache/apt/archives/' \
  --setup-hook="sync-in $DEB_CACHE /var/cache/apt/archives/" \
  --customize-hook="sync-out /var/cache/apt/archives $DEB_CACHE" \
  "$SUITE" "$x" "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" "deb $SECURITY_MIRROR $SUITE-security main" </dev/null

# Keep what the runner needs: the loader and libraries, Python, busybox.
mkdir -p "$env/bin" "$env/usr/bin" "$env/usr/lib" "$env/lib" "$env/kernel"
cp -a "$x/lib/x86_64-linux-gnu" "$env/lib/"
cp -a "$x/usr/lib/x86_64-linux-gnu" "$x/usr/lib/python3.11" "$x/usr/lib/python3" "$env/usr/lib/"
cp -a "$x/usr/bin/python3.11" "$env/usr/bin/"
cp -a "$x/bin/busybox" "$env/bin/"
ln -s busybox "$env/bin/sh"
# Trim: what a runner never loads.
rm -rf "$env/usr/lib/x86_64-linux-gnu/"{gconv,perl-base,engines-3,ossl-modules,krb5} \
  "$env/usr/lib/python3.11/"{test,idlelib,tkinter,turtledemo,ensurepip,lib2to3,pydoc_data,distutils/tests,config-3.11-x86_64-linux-gnu} \
  "$env/usr/lib/python3/dist-packages/"{pkg_resources,py,py-*,_cffi_backend*}
find "$env" -name __pycache__ -prune -exec rm -rf {} +
find "$env/lib" "$env/usr/lib" -name '*.a' -delete
# The runner's files and the injected entrypoint.
cp -a "$KERNEL_SRC"/*.py "$env/kernel/"
[[ -d $KERNEL_SRC/service-defs ]] && cp -a "$KERNEL_SRC/service-defs" "$env/kernel/"
install -m 0755 "$HERE/entrypoint.sh" "$env/entrypoint.sh"
install -m 0644 "$HERE/drop.py" "$env/kernel/drop.py"

# Bytecode, so a read-only env starts quickly; unchecked-hash pycs are the same on every build.
py=("$env/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" --library-path "$env/lib/x86_64-linux-gnu:$env/usr/lib/x86_64-linux-gnu" "$env/usr/bin/python3.11" -I -B) # -B: no timestamp pycs from this run
"${py[@]}" -c 'import zmq, msgpack, sys; assert sys.version_info[:2] == (3, 11)' || die "the env's Python does not run"
"${py[@]}" -m compileall -q -j 0 --invalidation-mode unchecked-hash -s "$env" -p /opt/compute-agent/runner \
  "$env/usr/lib/python3.11" "$env/usr/lib/python3/dist-packages" "$env/kernel" >/dev/null || die "compileall failed"

chown -R 0:0 "$env"
chmod -R u+rwX,go+rX,go-w "$env"
find "$env" -depth -exec touch -h -d @0 {} +

# The manifest (not listed in itself) and the digest over it.
manifest() {
  (cd "$env" && find . -mindepth 1 ! -name MANIFEST -print0 | LC_ALL=C sort -z | while IFS= read -r -d '' p; do
    if [[ -L $p ]]; then printf 'l 777 0 %s %s\n' "$(readlink "$p")" "${p#./}"
    elif [[ -d $p ]]; then printf 'd %s 0 - %s\n' "$(stat -c %a "$p")" "${p#./}"
    else printf 'f %s %s %s\n' "$(stat -c '%a %s' "$p")" "$(sha256sum <"$p" | cut -c1-64)" "${p#./}"; fi
  done)
}
manifest >"$env/MANIFEST"
chmod 0644 "$env/MANIFEST"
touch -h -d @0 "$env/MANIFEST" "$env"
digest=$(sha256sum <"$env/MANIFEST" | cut -c1-24)
dest=$ROOT/$digest
if [[ -d $dest ]]; then
  log "$dest is already installed"
  touch "$dest.installed" # the newest: the agent takes the env installed last
else
  mv "$env" "$dest"
  touch "$dest.installed"
  log "installed $dest ($(du -sh "$dest" | cut -f1), $(wc -l <"$dest/MANIFEST") entries, $(( $(date +%s) - t0 )) s)"
fi
echo "$digest" >"$ROOT/.recipe-$recipe"
echo "$dest"
