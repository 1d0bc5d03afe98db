"""SSH among the kernels of a session (docs/sessions.rst, "SSH among the kernels").

When the agent left the session's key pair in /home/work/.config (id_cluster,
id_cluster.pub: only the kernels of a session of several kernels get one),
the runner, as the kernel user, installs it in ~/.ssh: the key, its public
half in authorized_keys, a client config (port 2200, that key, no host key
prompts, since the kernels of a session come and go), and ~/.ssh/environment
with the kernel's environment, so that `ssh sub1 cmd` runs cmd as code in
the kernel would. Then it starts the image's sshd as the kernel user on port
2200: keys only, its own host key in /tmp. An image without sshd gets the
client side and a line in the log. A runner started again finds its sshd
still running and leaves it.
"""
import os
import pwd
import shutil
import subprocess

from common import HOME, log

CONFIG = os.path.join(HOME, '.config')
SSH_DIR = os.path.join(HOME, '.ssh')
PORT = 2200
STATE = '/tmp/.cluster-sshd'
SKIP_ENV = ('RUNNER_', 'CA_')


def _read(name):
    try:
        with open(os.path.join(CONFIG, name), 'rb') as f:
            return f.read(64 * 1024)
    except OSError:
        return None


def _write(path, data, mode):
    tmp = '%s.tmp-%d' % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _client(private, public):
    os.makedirs(SSH_DIR, mode=0o700, exist_ok=True)
    os.chmod(SSH_DIR, 0o700)
    _write(os.path.join(SSH_DIR, 'id_cluster'), private, 0o600)
    _write(os.path.join(SSH_DIR, 'id_cluster.pub'), public, 0o644)
    keys = os.path.join(SSH_DIR, 'authorized_keys')
    try:
        with open(keys, 'rb') as f:
            held = f.read()
    except OSError:
        held = b''
    line = public.strip()
    if line not in held.splitlines():
        _write(keys, held + (b'' if held.endswith(b'\n') or not held else b'\n') + line + b'\n', 0o600)
    config = os.path.join(SSH_DIR, 'config')
    if not os.path.lexists(config):  # the user's own config wins
        _write(config, (
            'Host *\n'
            '  Port %d\n'
            '  IdentityFile ~/.ssh/id_cluster\n'
            '  StrictHostKeyChecking no\n'
            '  UserKnownHostsFile /dev/null\n'
            '  LogLevel ERROR\n' % PORT).encode(), 0o600)
    env = ''.join('%s=%s\n' % (k, v) for k, v in sorted(os.environ.items())
                  if not k.startswith(SKIP_ENV) and '\n' not in k + v)
    _write(os.path.join(SSH_DIR, 'environment'), env.encode('utf-8', 'replace'), 0o600)


def _running():
    try:
        with open(os.path.join(STATE, 'sshd.pid')) as f:
            os.kill(int(f.read().strip()), 0)
        return True
    except (OSError, ValueError):
        return False


def _server():
    sshd = shutil.which('sshd') or ('/usr/sbin/sshd' if os.access('/usr/sbin/sshd', os.X_OK) else None)
    keygen = shutil.which('ssh-keygen')
    if not sshd or not keygen:
        log('no sshd (or ssh-keygen) in this image: ssh into this kernel of the session is not served')
        return
    if _running():
        return
    os.makedirs(STATE, mode=0o700, exist_ok=True)
    host_key = os.path.join(STATE, 'host_key')
    if not os.path.exists(host_key):
        subprocess.run([keygen, '-q', '-t', 'ecdsa', '-N', '', '-f', host_key],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
    user = pwd.getpwuid(os.getuid()).pw_name
    with open(os.path.join(STATE, 'sshd_config'), 'w') as f:
        f.write('\n'.join([
            'Port %d' % PORT,
            'HostKey %s' % host_key,
            'PidFile %s/sshd.pid' % STATE,
            'AuthorizedKeysFile %s/authorized_keys' % SSH_DIR,
            'PubkeyAuthentication yes',
            'PasswordAuthentication no',
            'KbdInteractiveAuthentication no',
            'UsePAM no',
            'StrictModes no',
            'PermitUserEnvironment yes',
            'AllowUsers %s' % user,
            'X11Forwarding no',
            'PrintMotd no',
            'Subsystem sftp internal-sftp',
            '']))
    # sshd listens, then goes to the background: once this returns, port 2200 answers
    r = subprocess.run([os.path.realpath(sshd), '-f', os.path.join(STATE, 'sshd_config'), '-E', os.path.join(STATE, 'sshd.log')],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=30)
    if r.returncode != 0:
        log('sshd did not start (status %d): %s' % (r.returncode, r.stderr.decode('utf-8', 'replace').strip()[-500:]))
    else:
        log('sshd of the session on port %d' % PORT)


def start():
    """Installs the session's key pair and starts sshd, when the agent left one; never raises."""
    private, public = _read('id_cluster'), _read('id_cluster.pub')
    if not private or not public:
        return
    try:
        _client(private, public)
        _server()
    except Exception as e:  # the kernel runs on without ssh; the log says why
        log('ssh of the session not set up: %s' % e)
