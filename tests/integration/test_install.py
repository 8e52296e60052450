"""meson install with a prefix of /usr, for real but throwaway: a
private mount namespace lays writable overlays over /usr, /etc and /var,
so `meson install`, `systemd-sysusers` and `systemd-tmpfiles` write to
the real paths there and leave the host untouched. Then
`systemd-analyze verify` must accept the installed unit, and the agent
must start as the user sysusers created, with the config as installed
(0640 root:pgbdr-agent), and probe a real PostgreSQL with --once."""

import os
import subprocess

import pytest

from harness import ROOT, CAPTURED

pytestmark = pytest.mark.slow

SCRIPT = r"""
set -e
for d in usr etc var; do
    mkdir -p "$T/$d-up" "$T/$d-work"
    mount -t overlay overlay -o "lowerdir=/$d,upperdir=$T/$d-up,workdir=$T/$d-work" "/$d"
done
meson install -C "$B" --no-rebuild --quiet
systemd-sysusers
systemd-tmpfiles --create pgbdr-agent.conf
echo "user: $(getent passwd pgbdr-agent)"
echo "config: $(stat -c '%U:%G %a' /etc/pgbdr-agent/pgbdr-agent.ini)"
echo "home: $(stat -c '%U:%G %a' /var/lib/pgbdr-agent)"
unit=$(systemctl show -P FragmentPath pgbdr-agent.service 2>/dev/null || true)
[ -n "$unit" ] || unit=$(pkg-config --variable=systemdsystemunitdir systemd)/pgbdr-agent.service
echo "unit: $unit"
systemd-analyze verify "$unit" >"$T/verify.out" 2>&1 && echo "verify: rc 0" || echo "verify: rc $?"
grep -E '^(User|ExecStart)=' "$unit"
# the installed file keeps its mode and owner when rewritten in place
cat "$T/node.ini" >/etc/pgbdr-agent/pgbdr-agent.ini
cd /
set +e
runuser -u pgbdr-agent -- /usr/sbin/pgbdr-agent -c /etc/pgbdr-agent/pgbdr-agent.ini --once
echo "once: rc $?"
"""


def host_state():
    """What the install would change on the host, were it not contained."""
    def stat(path):
        try:
            st = os.stat(path)
            return (st.st_ino, st.st_mtime_ns)
        except FileNotFoundError:
            return None
    users = subprocess.run(["getent", "passwd", "pgbdr-agent"], capture_output=True).stdout
    return [stat(p) for p in ("/usr/sbin/pgbdr-agent", "/etc/pgbdr-agent",
                              "/var/lib/pgbdr-agent", "/etc/passwd")] + [users]


def test_meson_install_prefix_usr(registry, plain_pg, password):
    plain_pg.set_password(password)
    tmp = registry.mkdtemp("install")
    build = os.path.join(tmp, "build")
    subprocess.run(["meson", "setup", build, ROOT, "--prefix=/usr", "-Dtests=false",
                    "-Dwerror=true"], check=True, capture_output=True, timeout=300)
    subprocess.run(["meson", "compile", "-C", build], check=True, capture_output=True,
                   timeout=900)
    with open(os.path.join(tmp, "node.ini"), "w") as f:
        f.write(f"[postgresql]\nflavor = auto\ndsn = {plain_pg.tcp_dsn('app', password=password)}\n")
    host_before = host_state()
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c", SCRIPT],
                       env=dict(os.environ, T=tmp, B=build), capture_output=True, text=True,
                       timeout=300)
    out = r.stdout + r.stderr
    CAPTURED.text("install script", out)
    assert r.returncode == 0, out
    assert host_state() == host_before, "the install leaked out of its namespace"

    lines = dict(l.split(": ", 1) for l in r.stdout.splitlines() if ": " in l
                 and l.split(": ", 1)[0] in ("user", "config", "home", "unit", "verify", "once"))
    user = lines["user"].split(":")
    assert user[0] == "pgbdr-agent" and 0 < int(user[2]) < 1000, out
    assert user[5] == "/var/lib/pgbdr-agent" and user[6].endswith("nologin"), out
    assert lines["config"] == "root:pgbdr-agent 640", out
    assert lines["home"] == "pgbdr-agent:pgbdr-agent 750", out
    assert lines["unit"].endswith("/systemd/system/pgbdr-agent.service"), out
    with open(os.path.join(tmp, "verify.out")) as f:
        verify = f.read()
    assert lines["verify"] == "rc 0" and verify == "", verify
    assert "ExecStart=/usr/sbin/pgbdr-agent -c /etc/pgbdr-agent/pgbdr-agent.ini" in out
    assert "User=pgbdr-agent" in out
    node_lines = [l for l in r.stdout.splitlines() if "ready" in l]
    assert lines["once"] == "rc 0" and node_lines, out
