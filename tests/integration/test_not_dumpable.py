"""
The agent holds passwords, so it is never dumpable: started directly as
an unprivileged user (as the shipped systemd unit does), its
/proc/PID/mem belongs to root, and a crash writes no core file.
"""

import os
import pwd
import resource
import signal
import socket
import subprocess

from harness import agent_binary, free_port, ini_text, wait_for


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def test_unprivileged_agent_is_not_dumpable(registry, password):
    d = registry.mkdtemp("dumpable")
    port = free_port()
    cfg = os.path.join(d, "pgbdr-agent.ini")
    with open(cfg, "w") as f:
        f.write(ini_text([
            ("agent", {"http_listen": f"127.0.0.1:{port}", "interval": "1s"}),
            ("node.n1", {"dsn": f"host=127.0.0.1 port={free_port()} dbname=app user=m "
                                f"password={password}", "flavor": "plain"}),
        ]))
    nobody = pwd.getpwnam("nobody")
    os.chown(cfg, nobody.pw_uid, nobody.pw_gid)
    os.chown(d, nobody.pw_uid, nobody.pw_gid)   # a core file could be written here
    os.chmod(cfg, 0o600)

    def unlimited_cores():
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

    proc = subprocess.Popen([agent_binary(), "-c", cfg], user=nobody.pw_uid,
                            group=nobody.pw_gid, extra_groups=[], cwd=d,
                            preexec_fn=unlimited_cores,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: proc.poll() is None and listening(port), 10, desc="agent listening")
        with open(f"/proc/{proc.pid}/status") as f:
            uids = [line.split()[1:] for line in f if line.startswith("Uid:")][0]
        assert set(uids) == {str(nobody.pw_uid)}, uids
        mem = os.stat(f"/proc/{proc.pid}/mem")
        assert mem.st_uid == 0, f"/proc/PID/mem owned by uid {mem.st_uid}: dumpable"
        # and a crash leaves no core behind in its working directory
        os.kill(proc.pid, signal.SIGSEGV)
        proc.wait(10)
        # a sanitizer build catches the signal and aborts (abort_on_error)
        assert proc.returncode in (-signal.SIGSEGV, -signal.SIGABRT), proc.returncode
        assert not [f for f in os.listdir(d) if f.startswith("core")], os.listdir(d)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        proc.stderr.close()
