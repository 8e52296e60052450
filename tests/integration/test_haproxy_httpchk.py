"""HAProxy 2.6 runs haproxy-examples/httpchk.cfg AS IS (configured only
through the environment variables the file references) against three
agents, one per emulated BDR node, as in the classic deployment: one
agent on each database host, HAProxy's default `OPTIONS / HTTP/1.0`
probe, and the database port behind it."""

import os
import time

import psycopg2
import pytest

import harness
from harness import FAST_AGENT, FIXTURES_DIR, HAPROXY_EXAMPLES, Agent, HAProxy, PgServer, free_port

NODES = ("node1", "node2", "node3")
BACKEND = "pg_bdr"
CHECK_INTER = 0.5
AGENT_INTERVAL = 0.2


@pytest.fixture(scope="module")
def pg(module_registry, module_password):
    pg = PgServer(module_registry, "hap", pglogical=False).init().start()
    for name in NODES:
        # One database per emulated BDR node: each has its own catalog.
        pg.create_database(name)
        pg.run_file(os.path.join(FIXTURES_DIR, "bdr1_emulation.sql"), dbname=name)
        others = [p for p in NODES if p != name]
        pg.sql("SELECT bdr.emulation_setup(%s, VARIADIC %s)", (name, others), dbname=name)
        pg.apply_grants("bdr", dbname=name, password=module_password)
    return pg


@pytest.fixture(scope="module")
def agents(module_registry, pg, module_password):
    out = {}
    for name in NODES:
        out[name] = Agent(module_registry, [
            ("postgresql", [("host", "127.0.0.1"), ("port", pg.port), ("database", name),
                            ("user", "pgbdr_monitor"), ("password", module_password)]),
            ("agent", dict(FAST_AGENT, interval=f"{int(AGENT_INTERVAL * 1000)}ms")),
        ], name=f"agent-{name}").start()
    for name, a in out.items():
        a.wait_state(name, "ready", 10)
    return out


@pytest.fixture(scope="module")
def haproxy(module_registry, pg, agents):
    listen = free_port()
    env = {
        "PGBDR_LISTEN": f"127.0.0.1:{listen}",
        "PGBDR_CHECK_INTER": f"{int(CHECK_INTER * 1000)}",
        "PGBDR_CHECK_FASTINTER": f"{int(CHECK_INTER * 1000)}",
        "PGBDR_CHECK_RISE": "1",
        "PGBDR_CHECK_FALL": "1",
    }
    for i, name in enumerate(NODES, 1):
        env[f"PGBDR_NODE{i}"] = f"127.0.0.1:{pg.port}"
        env[f"PGBDR_NODE{i}_AGENT_PORT"] = str(agents[name].port)
    h = HAProxy(module_registry, os.path.join(HAPROXY_EXAMPLES, "httpchk.cfg"), env)
    r = h.check_config()
    assert r.returncode == 0, r.stdout + r.stderr
    h.listen_port = listen
    return h.start()


def flip(pg, node, code):
    pg.sql("UPDATE bdr.bdr_nodes SET node_status = %s WHERE node_name = %s", (code, node),
           dbname=node)


def test_example_file_is_valid_with_its_defaults():
    import subprocess
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGBDR_")}
    r = subprocess.run([harness.HAPROXY_BIN, "-c", "-f", os.path.join(HAPROXY_EXAMPLES, "httpchk.cfg")],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_all_up(haproxy):
    for name in NODES:
        row = haproxy.wait_for_status(BACKEND, name, "UP", 5)
        assert row["check_status"].lstrip("* ") == "L7OK", row
        assert row["check_code"] == "200", row


def test_sessions_pass_through_haproxy(haproxy, module_password):
    for name in NODES:
        haproxy.wait_for_status(BACKEND, name, "UP", 5)
    conn = psycopg2.connect(host="127.0.0.1", port=haproxy.listen_port, dbname="node1",
                            user="pgbdr_monitor", password=module_password, connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT bdr.bdr_get_local_node_name()")
            assert cur.fetchone()[0] == "node1"
    finally:
        conn.close()


def test_joining_node_goes_down_then_up(pg, agents, haproxy):
    for name in NODES:
        haproxy.wait_for_status(BACKEND, name, "UP", 5)
    # Agent probe + HAProxy check interval + check itself, with margin.
    budget = AGENT_INTERVAL + CHECK_INTER + 2.0
    flip(pg, "node1", "c")
    try:
        t0 = time.monotonic()
        row = haproxy.wait_for_status(BACKEND, "node1", "DOWN", budget)
        assert time.monotonic() - t0 <= budget
        assert row["check_status"].lstrip("* ") == "L7STS", row
        assert row["check_code"] == "503", row
        # The others are untouched.
        for name in ("node2", "node3"):
            assert haproxy.server(BACKEND, name)["status"] == "UP"
    finally:
        flip(pg, "node1", "r")
    t0 = time.monotonic()
    haproxy.wait_for_status(BACKEND, "node1", "UP", budget)
    assert time.monotonic() - t0 <= budget


def test_parted_backup_goes_down(pg, agents, haproxy):
    haproxy.wait_for_status(BACKEND, "node3", "UP", 5)
    flip(pg, "node3", "k")
    try:
        haproxy.wait_for_status(BACKEND, "node3", "DOWN", AGENT_INTERVAL + CHECK_INTER + 2.0)
    finally:
        flip(pg, "node3", "r")
    haproxy.wait_for_status(BACKEND, "node3", "UP", AGENT_INTERVAL + CHECK_INTER + 2.0)


def test_agent_stopped_means_down(agents, haproxy):
    """If the agent itself dies, HAProxy's check fails: fail closed."""
    a = agents["node2"]
    haproxy.wait_for_status(BACKEND, "node2", "UP", 5)
    a.stop()
    try:
        row = haproxy.wait_for_status(BACKEND, "node2", "DOWN", CHECK_INTER + 2.0)
        assert row["check_status"].lstrip("* ").startswith("L4"), row
    finally:
        a.start()
    haproxy.wait_for_status(BACKEND, "node2", "UP", 5)
