# Entrypoint of a kernel whose image carries no runner (docs/images.rst,
# "What the agent adds"): run by the runner environment's own busybox,
#   /opt/compute-agent/runner/bin/busybox sh /opt/compute-agent/runner/entrypoint.sh
# under Docker's init, so it needs nothing of the image: no bash, useradd,
# gosu or Python. It does what the baked entrypoint
# (deploy/kernels/python/entrypoint.sh) does: the kernel user, the home's
# ownership, the bootstrap script, the runner's output FIFOs, and the runner
# restarted whenever it dies; the runner is the environment's own Python.
#
# How user code runs is chosen here and handed to the runner:
#   CA_USER_PYTHON  the image's Python for query mode and completions: as the
#                   agent set it (label ai.backend.runtime-path), else python3
#                   (or python, if it is Python 3) found on the image's PATH
#   CA_KERNEL_MODE  shell when the image has no Python (or its label says a
#                   runtime other than python): query mode runs the shell
#   CA_USER_SHELL   the image's shell for batch, exec and the terminal:
#                   /bin/bash, else /bin/sh, else the environment's busybox sh
# and the choice is logged (docker logs, get_logs).
set -u
E=/opt/compute-agent/runner
BB=$E/bin/busybox
LIBS=$E/lib/x86_64-linux-gnu:$E/usr/lib/x86_64-linux-gnu
# The environment's Python: its own loader and libraries, isolated (-I) from PYTHON* variables and user sites.
envpy() { "$E/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" --library-path "$LIBS" "$E/usr/bin/python3.11" -I -u "$@"; }
log() { echo "entrypoint: $*" >&2; }
field() { # field FILE KEY-COLUMN VALUE OUT-COLUMN: the first matching line's column (getent without NSS)
  [ -f "$1" ] && $BB awk -F: -v k="$2" -v v="$3" -v o="$4" '$k == v { print $o; exit }' "$1"
}

# The image's shell and Python.
if [ -z "${CA_USER_SHELL:-}" ]; then
  for s in /bin/bash /bin/sh "$E/bin/sh"; do
    if [ -x "$s" ]; then CA_USER_SHELL=$s; break; fi
  done
fi
export CA_USER_SHELL
is_py3() { [ -x "$1" ] && "$1" -c 'import sys; sys.exit(sys.version_info[0] != 3)' </dev/null >/dev/null 2>&1; }
if [ "${CA_KERNEL_MODE:-}" != shell ]; then
  if [ -n "${CA_USER_PYTHON:-}" ]; then
    if ! is_py3 "$CA_USER_PYTHON"; then
      log "the image's runtime-path $CA_USER_PYTHON is not a Python 3 this container can run; looking on PATH"
      CA_USER_PYTHON=
    fi
  fi
  if [ -z "${CA_USER_PYTHON:-}" ]; then
    for name in python3 python; do
      p=$(command -v "$name" 2>/dev/null) || continue
      case $p in /*) ;; *) continue ;; esac
      if is_py3 "$p"; then CA_USER_PYTHON=$p; break; fi
    done
  fi
  if [ -n "${CA_USER_PYTHON:-}" ]; then
    log "user code runs with the image's Python $CA_USER_PYTHON; the shell is $CA_USER_SHELL"
    export CA_USER_PYTHON
    unset CA_KERNEL_MODE
  else
    log "the image has no Python 3: a shell kernel ($CA_USER_SHELL)"
    unset CA_USER_PYTHON
    export CA_KERNEL_MODE=shell
  fi
else
  log "a shell kernel ($CA_USER_SHELL), as the image's labels say"
  unset CA_USER_PYTHON
fi
# The apps' definitions (start_service): the image's own where it has them, else the environment's.
if [ -z "${SERVICE_DEFS_DIR:-}" ]; then
  if [ -d /opt/kernel/service-defs ]; then SERVICE_DEFS_DIR=/opt/kernel/service-defs; else SERVICE_DEFS_DIR=$E/kernel/service-defs; fi
  export SERVICE_DEFS_DIR
fi
# The environment's tools come after the image's own (setsid, awk, ... in images without them).
export PATH="${PATH:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}:$E/bin"

# The kernel user.
run_as=
if [ "$($BB id -u)" -eq 0 ]; then
  uid=${LOCAL_USER_ID:-1000}
  case $uid in '' | *[!0-9]*) log "LOCAL_USER_ID=$uid is not a number; using 1000"; uid=1000 ;; esac
  gid=${LOCAL_GROUP_ID:-$(field /etc/passwd 3 "$uid" 4)}
  case $gid in '' | *[!0-9]*) gid=$uid ;; esac
  if [ "$uid" -ne 0 ]; then
    if [ -z "$(field /etc/group 3 "$gid" 1)" ]; then
      echo "group$gid:x:$gid:" >>/etc/group || log "cannot add group $gid to /etc/group"
    fi
    if [ -z "$(field /etc/passwd 3 "$uid" 1)" ]; then
      echo "user$uid:x:$uid:$gid::/home/work:$CA_USER_SHELL" >>/etc/passwd || log "cannot add user $uid to /etc/passwd"
    fi
    user=$(field /etc/passwd 3 "$uid" 1)
    user=${user:-user$uid}
    $BB mkdir -p /home/work
    # a fresh (not bind-mounted) home must be writable by the kernel user
    [ "$($BB stat -c %u /home/work)" -eq 0 ] && $BB chown "$uid:$gid" /home/work 2>/dev/null
    export HOME=/home/work USER="$user" LOGNAME="$user" SHELL="$CA_USER_SHELL"
    # The kernel user's packages (pip install --user) go outside the home, into the
    # container's own file system, so that a kernel saved as an image keeps them.
    if $BB mkdir -p /opt/user-packages && $BB chown "$uid:$gid" /opt/user-packages 2>/dev/null; then
      export PYTHONUSERBASE=/opt/user-packages PATH="/opt/user-packages/bin:$PATH"
    else
      log "cannot make /opt/user-packages; packages installed with pip install --user go to the home"
    fi
    run_as="$uid $gid"
  else
    export HOME=/home/work USER=root LOGNAME=root SHELL="$CA_USER_SHELL"
  fi
fi
as_user() { # as_user PROG ARG...: exec-style run as the kernel user
  if [ -n "$run_as" ]; then
    # shellcheck disable=SC2086
    envpy "$E/kernel/drop.py" $run_as --exec "$@"
  else
    "$@"
  fi
}

cd /home/work 2>/dev/null || cd /

# The bootstrap script (create_kernel's bootstrap_script): as the baked entrypoint runs it.
if [ -f /home/work/bootstrap.sh ] && [ ! -e /home/work/.config/bootstrap.done ]; then
  log "running /home/work/bootstrap.sh as uid ${uid:-$($BB id -u)}"
  rcfile=/tmp/.bootstrap.rc
  { as_user "$CA_USER_SHELL" /home/work/bootstrap.sh </dev/null 2>&1; echo $? >"$rcfile"; } | $BB tee /tmp/bootstrap.out
  rc=$($BB cat "$rcfile")
  if [ "$rc" -ne 0 ]; then
    log "bootstrap script failed with exit code $rc; the runner is not started"
    { echo "$rc"; $BB tail -n 20 /tmp/bootstrap.out; } >/tmp/.bootstrap.failed
    as_user "$BB" sh -c 'cat /tmp/.bootstrap.failed >/home/work/.config/bootstrap.failed.tmp &&
      mv -f /home/work/.config/bootstrap.failed.tmp /home/work/.config/bootstrap.failed'
    exec "$BB" sleep 2147483647
  fi
  as_user "$BB" sh -c 'echo 0 >/home/work/.config/bootstrap.done'
  log "bootstrap script done"
fi

# The runner's output FIFOs, held open here (as the baked entrypoint does; docs/running-code.rst).
out_dir=/tmp/.runner-out
if $BB rm -rf "$out_dir" && $BB mkdir -m 700 "$out_dir" && $BB mkfifo -m 600 "$out_dir/1" "$out_dir/2" &&
  { [ -z "$run_as" ] || $BB chown "$uid:$gid" "$out_dir" "$out_dir/1" "$out_dir/2"; } && exec 7<>"$out_dir/1" 8<>"$out_dir/2"; then
  export RUNNER_OUT_FDS=7,8
else
  log "cannot make the runner's output FIFOs; output written just before a runner death may be lost"
fi

log "starting the injected runner as uid ${uid:-$($BB id -u)}"
while :; do
  if [ -n "$run_as" ]; then
    # shellcheck disable=SC2086
    envpy "$E/kernel/drop.py" $run_as --run "$E/kernel/runner.py"
  else
    envpy "$E/kernel/runner.py"
  fi
  rc=$?
  log "runner exited with status $rc; restarting in 1 s"
  export RUNNER_PREVIOUS_STATUS=$rc
  $BB sleep 1
done
