#!/bin/bash
# Entrypoint of the kernel image (run under tini): starts the kernel runner
# as the kernel user and restarts it if it ever dies, so the container only
# ends when it is stopped (the agent reports a container whose main process
# ended as self-terminated).
#
#   LOCAL_USER_ID   uid to run as (uid-match images; the agent sets it)
#   LOCAL_GROUP_ID  gid to run as (default: the uid's group, else the uid)
#   RUNNER          runner script (default /opt/kernel/runner.py)
#
# A restarted runner gets RUNNER_PREVIOUS_STATUS, the status the one before it
# ended with (bash's $?: 128 + N for signal N), and announces it to the agent,
# which ends the run that died with it and says why.
set -u

RUNNER=${RUNNER:-/opt/kernel/runner.py}
log() { echo "entrypoint: $*" >&2; }

run_as=()
if [[ $(id -u) -eq 0 ]]; then
  uid=${LOCAL_USER_ID:-}
  if [[ -z $uid ]]; then
    uid=$(id -u work 2>/dev/null || echo 1000)
  fi
  if ! [[ $uid =~ ^[0-9]+$ ]]; then
    log "LOCAL_USER_ID=$uid is not a number; using work"
    uid=$(id -u work 2>/dev/null || echo 1000)
  fi
  if [[ $uid -ne 0 ]]; then
    entry=$(getent passwd "$uid" || true)
    if [[ -n $entry ]]; then
      gid=${LOCAL_GROUP_ID:-$(cut -d: -f4 <<<"$entry")}
    else
      gid=${LOCAL_GROUP_ID:-$uid}
    fi
    [[ $gid =~ ^[0-9]+$ ]] || gid=$uid
    if ! getent group "$gid" >/dev/null; then
      groupadd -g "$gid" "group$gid" 2>/dev/null ||
        echo "group$gid:x:$gid:" >>/etc/group || log "cannot add group $gid"
    fi
    if [[ -z $entry ]]; then
      useradd -u "$uid" -g "$gid" -o -M -N -d /home/work -s /bin/bash "user$uid" 2>/dev/null ||
        echo "user$uid:x:$uid:$gid::/home/work:/bin/bash" >>/etc/passwd || log "cannot add user $uid"
    fi
    user=$(getent passwd "$uid" | cut -d: -f1)
    user=${user:-user$uid}
    mkdir -p /home/work
    # a fresh (non-bind-mounted) home must be writable by the kernel user
    [[ -O /home/work ]] && chown "$uid:$gid" /home/work 2>/dev/null
    export HOME=/home/work USER=$user LOGNAME=$user SHELL=/bin/bash
    # The kernel user's packages (pip install --user) go outside the home, into the
    # container's own file system, so that a kernel saved as an image keeps them.
    if mkdir -p /opt/user-packages && chown "$uid:$gid" /opt/user-packages 2>/dev/null; then
      export PYTHONUSERBASE=/opt/user-packages PATH="/opt/user-packages/bin:$PATH"
    else
      log "cannot make /opt/user-packages; packages installed with pip install --user go to the home"
    fi
    if getent passwd "$uid" >/dev/null; then groups=--init-groups; else groups=--clear-groups; fi
    run_as=(setpriv --reuid="$uid" --regid="$gid" "$groups" --)
  else
    export HOME=/home/work USER=root LOGNAME=root SHELL=/bin/bash
  fi
fi

cd /home/work 2>/dev/null || cd /

# Per-kernel bootstrap (create_kernel's config.bootstrap_script, written by the
# agent to /home/work/bootstrap.sh): run once, as the kernel user, before the
# runner starts, its output in the container log (get_logs). The agent waits
# for .config/bootstrap.done or .config/bootstrap.failed (exit code, then the
# last lines); after a failure the runner is not started.
if [[ -f /home/work/bootstrap.sh && ! -e /home/work/.config/bootstrap.done ]]; then
  log "running /home/work/bootstrap.sh as uid ${uid:-$(id -u)}"
  "${run_as[@]}" /bin/bash /home/work/bootstrap.sh </dev/null 2>&1 | tee /tmp/bootstrap.out
  rc=${PIPESTATUS[0]}
  if [[ $rc -ne 0 ]]; then
    log "bootstrap script failed with exit code $rc; the runner is not started"
    # (written as the kernel user: the file is the user's, and root may lack CAP_DAC_OVERRIDE for the home)
    { echo "$rc"; tail -n 20 /tmp/bootstrap.out; } | "${run_as[@]}" sh -c 'cat >/home/work/.config/bootstrap.failed.tmp &&
      mv -f /home/work/.config/bootstrap.failed.tmp /home/work/.config/bootstrap.failed'
    exec sleep infinity
  fi
  "${run_as[@]}" sh -c 'echo 0 >/home/work/.config/bootstrap.done'
  log "bootstrap script done"
fi

# FIFOs for the runner's fds 1 and 2, held open here: what the runner or its
# subprocesses wrote to them just before it died stays in them, and the next
# runner reads it for the run that died (docs/running-code.rst, "Every result
# belongs to its run"); the runner keeps the tag of its job in the folder. Without them it
# makes pipes of its own.
out_dir=/tmp/.runner-out
if rm -rf "$out_dir" && mkdir -m 700 "$out_dir" && mkfifo -m 600 "$out_dir/1" "$out_dir/2" &&
  { [[ -z ${uid:-} ]] || chown "$uid:${gid:-$uid}" "$out_dir"; } && exec 7<>"$out_dir/1" 8<>"$out_dir/2"; then
  export RUNNER_OUT_FDS=7,8
else
  log "cannot make the runner's output FIFOs; output written just before a runner death may be lost"
fi

log "starting runner as uid ${uid:-$(id -u)}"
while :; do
  "${run_as[@]}" /usr/bin/python3 -u "$RUNNER"
  rc=$?
  log "runner exited with status $rc; restarting in 1 s"
  export RUNNER_PREVIOUS_STATUS=$rc
  sleep 1
done
