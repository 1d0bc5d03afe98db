"""Runs a program as the kernel user, for the injected entrypoint
(deploy/runner-env/entrypoint.sh) in images without setpriv, gosu or su.

    drop.py UID GID --exec PROG ARG...   exec PROG as UID:GID
    drop.py UID GID --run SCRIPT         run the Python SCRIPT in this process as UID:GID

The groups are the user's from the image's /etc/group when it names UID in
/etc/passwd, else GID alone. `--run` saves a second interpreter start for
the runner: the script runs as __main__ with its folder first on sys.path.
"""
import os
import pwd
import runpy
import sys


def main():
    uid, gid, mode, target = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    if os.getuid() == 0 and uid != 0:
        try:
            os.initgroups(pwd.getpwuid(uid).pw_name, gid)
        except (KeyError, OSError):
            os.setgroups([gid])
        os.setgid(gid)
        os.setuid(uid)
    if mode == '--exec':
        os.execv(target, sys.argv[4:])
    sys.argv = [target]
    sys.path.insert(0, os.path.dirname(os.path.abspath(target)))
    runpy.run_path(target, run_name='__main__')


if __name__ == '__main__':
    main()
