"""The xinetd move as the README describes it, with the real xinetd and
HAProxy's real `option httpchk` (haproxy-examples/httpchk.cfg):

- the classic PgSQLBDRChecker service block with only `server`,
  `server_args` and `user` changed is packaging/xinetd.d/pgsqlchk;
- run by xinetd on a host set up as the README says (pgsqlchk in
  /etc/services, the pgbdr-agent user from the sysusers snippet, the
  config 0640 root:pgbdr-agent), HAProxy sees the node UP (200) while
  PostgreSQL runs and DOWN (503) once it stops;
- the classic `user = nobody` cannot read that config, and the client
  still gets HTTP (a 503), not a bare error line.

The "host" is a private mount namespace with an overlay on /etc, so
/etc/services and the user exist only for this xinetd and its children.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from harness import (FIXTURES_DIR, HAPROXY_EXAMPLES, ROOT, HAProxy, PgServer, agent_binary, free_port,
                     read_until_close, wait_for)

pytestmark = pytest.mark.slow

# The classic checker's block, as its README shows it.
CLASSIC = """# default: on
# description: pgsqlchk
service pgsqlchk
{
        disable = no
        flags = REUSE
        socket_type = stream
        port = 9200
        wait = no
        user = nobody
        server = /usr/bin/pgsqlcheck/check.py
        log_on_failure += USERID
        only_from = 0.0.0.0/0
        per_source = UNLIMITED
}
"""

SHIPPED = os.path.join(ROOT, "packaging", "xinetd.d", "pgsqlchk")

NAMESPACE = r"""
set -e
mkdir -p "$T/etc-up" "$T/etc-work"
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$T/etc-up,workdir=$T/etc-work" /etc
printf 'pgsqlchk\t%s/tcp\t# PostgreSQL check\npgsqlchk-nobody\t%s/tcp\n' "$PORT" "$PORT2" >>/etc/services
systemd-sysusers "$T/sysusers.conf"
chown root:pgbdr-agent "$T/pgbdr-agent.ini"
chmod 0640 "$T/pgbdr-agent.ini"
exec xinetd -dontfork -stayalive -pidfile "$T/xinetd.pid" -f "$T/xinetd.conf"
"""


def changed_lines(a, b):
    """The lines of b that differ from a's, as {key: value}."""
    def kv(text):
        out = {}
        for line in text.splitlines():
            m = re.match(r"\s*(\w+)\s*\+?=\s*(.*)$", line)
            if m:
                out[m.group(1)] = m.group(2).strip()
        return out
    ka, kb = kv(a), kv(b)
    return {k: v for k, v in kb.items() if ka.get(k) != v}, set(ka) - set(kb)


def test_shipped_block_is_the_classic_one_with_three_lines_changed():
    with open(SHIPPED) as f:
        shipped = f.read()
    changed, removed = changed_lines(CLASSIC, shipped)
    assert set(changed) == {"server", "server_args", "user"}, changed
    assert not removed
    assert changed["user"] == "pgbdr-agent"
    assert changed["server"] == "/usr/sbin/pgbdr-agent"
    assert changed["server_args"] == "--inetd -c /etc/pgbdr-agent/pgbdr-agent.ini"


def http_get(port, timeout=10):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"OPTIONS / HTTP/1.0\r\n\r\n")
        return read_until_close(s, timeout)


@pytest.fixture
def xinetd(registry, module_password):
    """xinetd serving the shipped block (as pgbdr-agent) and the classic
    user = nobody variant, both with test paths and ports."""
    base = registry.mkdtemp("xinetd")
    os.chmod(base, 0o755)  # the service users must reach the config
    pg = PgServer(registry, "xinetd", pglogical=False).init().start()
    pg.create_database("app")
    # The classic checker watched BDR: the database carries the BDR 1
    # emulation's catalog (fixtures/bdr1_emulation.sql), one ready node.
    pg.run_file(os.path.join(FIXTURES_DIR, "bdr1_emulation.sql"), dbname="app")
    pg.sql("SELECT bdr.emulation_setup('node1')", dbname="app")
    pg.apply_grants("bdr", dbname="app", password=module_password)

    binary = os.path.join(base, "pgbdr-agent")
    shutil.copy(agent_binary(), binary)
    os.chmod(binary, 0o755)
    config = os.path.join(base, "pgbdr-agent.ini")
    with open(config, "w") as f:  # a classic database.ini, plus name =
        f.write(f"[postgresql]\nname = node1\nhost = 127.0.0.1\nport = {pg.port}\n"
                f"database = app\nuser = pgbdr_monitor\npassword = {module_password}\n")
    with open(os.path.join(base, "sysusers.conf"), "w") as f:
        f.write('u pgbdr-agent - "pgbdr-agent health agent" /var/lib/pgbdr-agent '
                '/usr/sbin/nologin\n')

    port, port2 = free_port(), free_port()
    with open(SHIPPED) as f:
        block = f.read()
    block = (block.replace("port = 9200", f"port = {port}")
             .replace("/usr/sbin/pgbdr-agent", binary)
             .replace("/etc/pgbdr-agent/pgbdr-agent.ini", config))
    nobody = (block.replace("service pgsqlchk", "service pgsqlchk-nobody")
              .replace(f"port = {port}", f"port = {port2}")
              .replace("user = pgbdr-agent", "user = nobody"))
    with open(os.path.join(base, "xinetd.conf"), "w") as f:
        f.write(block + "\n" + nobody)

    log = open(os.path.join(base, "xinetd.log"), "wb")
    proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "bash", "-c",
                             NAMESPACE], env=dict(os.environ, T=base, PORT=str(port),
                                                  PORT2=str(port2)),
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def listening():
        if proc.poll() is not None:
            with open(os.path.join(base, "xinetd.log")) as f:
                raise AssertionError(f"xinetd exited {proc.returncode}: {f.read()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            socket.create_connection(("127.0.0.1", port2), timeout=1).close()
            return True
        except OSError:
            return False
    try:
        wait_for(listening, 15, desc="xinetd listening")
        yield {"pg": pg, "port": port, "nobody_port": port2, "config": config}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        log.close()


def test_xinetd_through_haproxy_httpchk(registry, xinetd):
    port = xinetd["port"]
    reply = http_get(port)
    assert re.match(rb"HTTP/1\.[01] 200 ", reply), reply
    assert b"node1" in reply and b"ready" in reply, reply

    env = {"PGBDR_LISTEN": f"127.0.0.1:{free_port()}", "PGBDR_CHECK_INTER": "500",
           "PGBDR_CHECK_FASTINTER": "500", "PGBDR_CHECK_RISE": "1", "PGBDR_CHECK_FALL": "1"}
    for i in (1, 2, 3):
        env[f"PGBDR_NODE{i}"] = f"127.0.0.1:{xinetd['pg'].port}"
        env[f"PGBDR_NODE{i}_AGENT_PORT"] = str(port if i == 1 else xinetd["nobody_port"])
    h = HAProxy(registry, os.path.join(HAPROXY_EXAMPLES, "httpchk.cfg"), env).start()
    h.wait_for_status("pg_bdr", "node1", "UP", 20)
    # the classic user = nobody cannot read the 0640 config: down, over HTTP
    h.wait_for_status("pg_bdr", "node2", "DOWN", 20)

    xinetd["pg"].stop()
    h.wait_for_status("pg_bdr", "node1", "DOWN", 20)
    reply = http_get(port)
    assert re.match(rb"HTTP/1\.[01] 503 ", reply), reply

    xinetd["pg"].start()
    h.wait_for_status("pg_bdr", "node1", "UP", 20)


def test_classic_user_nobody_gets_http_not_a_bare_error(xinetd):
    reply = http_get(xinetd["nobody_port"])
    head, _, body = reply.partition(b"\r\n\r\n")
    assert re.match(rb"HTTP/1\.[01] 503 ", head), reply
    length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))
    assert length == len(body), reply
    # The body says what is wrong (syslog has it too), and it is the only
    # thing the client gets: no bare error line in front of the status.
    assert reply.startswith(b"HTTP/1."), reply
    assert b"configuration error" in body and b"Permission denied" in body, reply
