"""HAProxy Lua routing: haproxy-examples/lua-tcp.cfg AS IS, loading
haproxy-examples/pgbdr.lua, in front of three real PostgreSQL servers
watched by one central pgbdr-agent. The script polls the agent's
/compact endpoint and routes from its own copy: writes to the write
leader, reads by the agent's weights. Checked against what HAProxy's
stats socket reports and where new psycopg2 sessions land; a fake
agent (fake_agent.py) feeds it output the real agent never writes."""

import os
import signal
import time

import psycopg2
import pytest

import harness

from fake_agent import FakeAgent, compact_doc, http_reply
from harness import (FAST_AGENT, HAPROXY_EXAMPLES, Agent, HAProxy, PgServer, free_port,
                     node_section, wait_for)

NODES = ("node1", "node2", "node3")       # priorities 10, 20, 30: node1 preferred
LUA_SCRIPT = os.path.join(HAPROXY_EXAMPLES, "pgbdr.lua")
CFG = os.path.join(HAPROXY_EXAMPLES, "lua-tcp.cfg")
MAP_FILE = os.path.join(HAPROXY_EXAMPLES, "pgbdr.map")
POLL_MS = 100
MAX_AGE_MS = 1500
RETURN_DELAY = 3.0
LEADER_KEYS = {"leader_return_delay": f"{int(RETURN_DELAY * 1000)}ms",
               "leader_handover": "300ms"}


@pytest.fixture(scope="module")
def pgs(module_registry, module_password):
    out = {}
    for name in NODES:
        pg = PgServer(module_registry, name, pglogical=False).init().start()
        pg.create_database("app")
        pg.apply_grants("plain", dbname="app", password=module_password)
        out[name] = pg
    return out


@pytest.fixture(scope="module")
def agent(module_registry, pgs, module_password):
    sections = [("agent", dict(FAST_AGENT, **LEADER_KEYS))]
    for i, name in enumerate(NODES, 1):
        sections.append((f"node.{name}", node_section(pgs[name], module_password,
                                                      priority=10 * i)))
    a = Agent(module_registry, sections, name="agent-lua").start()
    for name in NODES:
        a.wait_state(name, "ready", 15)
    wait_for(lambda: a.status_json()["write_node"] == "node1", 15, desc="node1 leads")
    return a


def lua_haproxy(registry, pgs, agents, max_age_ms=MAX_AGE_MS):
    """lua-tcp.cfg configured by environment only, polling `agents`."""
    env = {
        "PGBDR_LUA_SCRIPT": LUA_SCRIPT,
        "PGBDR_AGENTS": ",".join(agents),
        "PGBDR_POLL_INTERVAL": str(POLL_MS),
        "PGBDR_POLL_TIMEOUT": "500",
        "PGBDR_MAX_AGE": str(max_age_ms),
        "PGBDR_WRITE_LISTEN": f"127.0.0.1:{free_port()}",
        "PGBDR_READ_LISTEN": f"127.0.0.1:{free_port()}",
        "PGBDR_CHECK_INTER": "500ms",
        "PGBDR_MAP": MAP_FILE,
    }
    for i, name in enumerate(NODES, 1):
        env[f"PGBDR_NODE{i}"] = f"127.0.0.1:{pgs[name].port}"
    h = HAProxy(registry, CFG, env)
    r = h.check_config()
    assert r.returncode == 0, r.stdout + r.stderr
    h.write_port = int(env["PGBDR_WRITE_LISTEN"].rsplit(":", 1)[1])
    h.read_port = int(env["PGBDR_READ_LISTEN"].rsplit(":", 1)[1])
    return h.start()


@pytest.fixture(scope="module")
def haproxy(module_registry, pgs, agent):
    return lua_haproxy(module_registry, pgs, [f"127.0.0.1:{agent.port}"])


def port_of(pgs):
    return {pg.port: name for name, pg in pgs.items()}


def write_target(haproxy, pgs, password, timeout=3):
    """The node a new session through the write port reaches, or None
    when HAProxy refuses it or cuts it before its first query."""
    try:
        conn = psycopg2.connect(host="127.0.0.1", port=haproxy.write_port, dbname="app",
                                user="pgbdr_monitor", password=password,
                                connect_timeout=timeout)
    except psycopg2.OperationalError:
        return None
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT inet_server_port()")
            return port_of(pgs)[cur.fetchone()[0]]
    except psycopg2.OperationalError:
        # cut by the script as its server lost the write role
        return None
    finally:
        conn.close()


def ready_servers(haproxy, backend):
    return sorted(r["svname"] for r in haproxy.show_stat()
                  if r["pxname"] == backend and r["svname"] not in ("FRONTEND", "BACKEND")
                  and r["status"].startswith("UP"))


def log_tail(haproxy):
    """HAProxy's log without the refused sessions, which would hide the rest."""
    lines = [l for l in haproxy.log().splitlines() if "<NOSRV>" not in l]
    return "\n".join(lines)[-3000:]


def wait_writes_on(haproxy, pgs, password, name, timeout):
    try:
        return wait_for(lambda: write_target(haproxy, pgs, password, timeout=2) == name,
                        timeout, interval=0.1, desc=f"writes land on {name}")
    except AssertionError as e:
        raise AssertionError(f"{e}\n--- haproxy log ---\n{log_tail(haproxy)}") from None


def wait_writes_refused(haproxy, pgs, password, timeout):
    try:
        return wait_for(lambda: write_target(haproxy, pgs, password, timeout=2) is None,
                        timeout, interval=0.1, desc="writes refused")
    except AssertionError as e:
        raise AssertionError(f"{e}\n--- haproxy log ---\n{log_tail(haproxy)}") from None


@pytest.fixture
def cluster_ok(pgs, agent, haproxy, module_password):
    """Every server and the agent running, node1 leading, before and after."""
    def restore():
        if agent.proc.poll() is not None:
            agent.start()
        for pg in pgs.values():
            if pg.postmaster_pid() is None:
                pg.start()
        for name in NODES:
            agent.wait_state(name, "ready", 15)
        wait_writes_on(haproxy, pgs, module_password, "node1", RETURN_DELAY + 15)
    restore()
    yield
    restore()


# --------------------------------------------------------------------------

def test_example_file_is_valid_with_its_defaults(registry):
    """Only the script and the map need a path here; every other setting
    keeps its production default."""
    h = HAProxy(registry, CFG, {"PGBDR_LUA_SCRIPT": LUA_SCRIPT, "PGBDR_MAP": MAP_FILE})
    r = h.check_config()
    assert r.returncode == 0, r.stdout + r.stderr


def test_compact_endpoint_matches_status(agent):
    """The agent's /compact carries the same judgement as /status, with a
    sequence number that grows and the agent's own staleness."""
    r1 = agent.get("/compact")
    assert r1.status == 200
    lines = r1.body.decode().splitlines()
    assert lines[0] == "pgbdr-compact 1"
    assert lines[-1] == f"end {len(NODES)}"
    fields = dict(line.split(" ", 1) for line in lines[1:] if not line.startswith("node "))
    st = agent.status_json()
    assert fields["write_node"] == st["write_node"] == "node1"
    assert int(fields["ready_nodes"]) == st["ready_nodes"] == 3
    assert 0 <= int(fields["staleness_ms"]) < 2000
    nodes = {l.split()[1]: l.split()[2:] for l in lines if l.startswith("node ")}
    for n in st["nodes"]:
        state, weight, write, _lag = nodes[n["name"]]
        assert (state, int(weight), write == "1") == (n["state"], n["weight"], n["write_leader"])
    seq1 = int(fields["seq"])
    wait_for(lambda: int(dict(l.split(" ", 1) for l in agent.get("/compact").body.decode()
                              .splitlines()[1:3])["seq"]) > seq1,
             5, desc="seq grows with the probe rounds")


def test_writes_follow_the_leader_through_failover(pgs, agent, haproxy, cluster_ok,
                                                   module_password, record_property, capsys):
    assert write_target(haproxy, pgs, module_password) == "node1"
    assert ready_servers(haproxy, "pg_write") == ["node1"]

    t0 = time.monotonic()
    pgs["node1"].kill()
    wait_writes_on(haproxy, pgs, module_password, "node2", 20)
    failover = time.monotonic() - t0
    record_property("lua_failover_seconds", round(failover, 2))
    with capsys.disabled():
        print(f"\nLua routing: node1 killed -> first new session on node2 after {failover:.2f} s "
              f"(agent interval 200 ms, fall 1, handover 300 ms; Lua poll {POLL_MS} ms)")
    assert ready_servers(haproxy, "pg_write") == ["node2"]

    # node1 returns: it takes the role back after leader_return_delay
    pgs["node1"].start()
    wait_writes_on(haproxy, pgs, module_password, "node1", RETURN_DELAY + 15)


def test_never_two_write_servers_during_failover(pgs, agent, haproxy, cluster_ok):
    seen = []
    stop_at = None
    pgs["node1"].kill()
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline:
        up = ready_servers(haproxy, "pg_write")
        seen.append(up)
        if up == ["node2"] and stop_at is None:
            stop_at = time.monotonic() + 1
            pgs["node1"].start()
        if stop_at and time.monotonic() > stop_at and up == ["node1"]:
            break
        time.sleep(0.05)
    assert max(len(s) for s in seen) <= 1, [s for s in seen if len(s) > 1][:5]
    assert ["node2"] in seen and seen[-1] == ["node1"], seen[-10:]


def test_read_weights_match_the_agent(pgs, agent, haproxy, cluster_ok):
    def agree():
        weights = {n["name"]: (n["state"], n["weight"]) for n in agent.status_json()["nodes"]}
        rows = {r["svname"]: r for r in haproxy.show_stat() if r["pxname"] == "pg_read"}
        for name, (state, weight) in weights.items():
            row = rows[name]
            if state in ("ready", "degraded"):
                if not row["status"].startswith("UP") or int(row["weight"]) != weight:
                    return False
            elif state == "down" and row["status"] != "MAINT":
                return False
        return weights
    assert wait_for(agree, 10, desc="pg_read matches the agent") == {
        n: ("ready", 100) for n in NODES}

    pgs["node3"].kill()
    agent.wait_state("node3", "down", 10)
    got = wait_for(agree, 10, desc="pg_read matches the agent with node3 down")
    assert got["node3"][0] == "down"
    assert haproxy.server("pg_read", "node3")["status"] == "MAINT"


def test_agent_down_refuses_writes_until_it_returns(pgs, agent, haproxy, cluster_ok,
                                                    module_password):
    # a hung agent: connections open, no answer
    os.kill(agent.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        wait_writes_refused(haproxy, pgs, module_password, MAX_AGE_MS / 1000 + 10)
        refused_after = time.monotonic() - t0
        # the task puts the servers in MAINT at the end of its next poll
        wait_for(lambda: ready_servers(haproxy, "pg_write") == []
                 and ready_servers(haproxy, "pg_read") == [], 5, desc="servers in MAINT")
    finally:
        os.kill(agent.pid, signal.SIGCONT)
    assert refused_after >= MAX_AGE_MS / 1000 * 0.5, "refused before the status was old"
    wait_writes_on(haproxy, pgs, module_password, "node1", 10)

    # a dead agent: connection refused
    agent.stop()
    wait_writes_refused(haproxy, pgs, module_password, MAX_AGE_MS / 1000 + 10)
    log = haproxy.log()
    assert "no usable status" in log and "no write node" in log, log[-2000:]
    agent.start()
    wait_writes_on(haproxy, pgs, module_password, "node1", 15)


def test_falls_back_to_the_next_agent(module_registry, pgs, agent, cluster_ok, module_password):
    """The first agent in the list answers garbage: the script uses the
    second one, and says why it skipped the first."""
    fake = module_registry.add(FakeAgent().start())
    fake.serve(b"this is not a status\n")
    h = lua_haproxy(module_registry, pgs, [fake.addr, f"127.0.0.1:{agent.port}"])
    wait_writes_on(h, pgs, module_password, "node1", 10)
    assert f"agent {fake.addr}: not a pgbdr-compact 1 document" in h.log()


GOOD_NODES = [("node1", "ready", 100), ("node2", "ready", 37, 1000), ("node3", "degraded", 80)]


def bad_outputs():
    huge_body = b"x" * (8 * 1024 * 1024)
    doc = compact_doc(9, GOOD_NODES, write="node3", best="node1")
    return [
        ("garbage", http_reply(b"\x00\xff garbage \x17\n" * 20), False),
        ("cut body", b"HTTP/1.1 200 OK\r\nContent-Length: 400\r\n\r\n" + doc[:60], True),
        ("cut headers", b"HTTP/1.1 200 OK\r\nContent-Le", True),
        ("no end line", http_reply(doc.rsplit(b"end", 1)[0]), False),
        ("huge declared body", http_reply(huge_body), True),
        ("huge line", b"HTTP/1.1 200 OK\r\nX: " + huge_body, True),
        ("endless headers", b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 100000, True),
        ("two leaders", http_reply(doc.replace(b"node node1 ready 100 0", b"node node1 ready 100 1")),
         False),
        ("leader down", http_reply(compact_doc(9, [("node1", "ready", 100), ("node2", "ready", 100),
                                                   ("node3", "down", 0)], write="node3")), False),
        ("weight over 100", http_reply(doc.replace(b"ready 100", b"ready 1000")), False),
        ("replica is the leader", http_reply(compact_doc(9, GOOD_NODES, write="node3", best="node1",
                                                         replica="node3")), False),
        ("stale", http_reply(compact_doc(9, GOOD_NODES, write="node3", staleness_ms=60000)), False),
        ("http error", b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", False),
        ("chunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
         True),
    ]


def test_bad_agent_output_never_routes_wrongly(module_registry, pgs, cluster_ok, module_password):
    """Fed by a fake agent only. After each bad answer the last good status
    ages out: new sessions are refused, never sent to a node the good status
    did not name, and HAProxy keeps running."""
    fake = module_registry.add(FakeAgent().start())
    fake.serve(compact_doc(1, GOOD_NODES, write="node2", best="node1"))
    h = lua_haproxy(module_registry, pgs, [fake.addr])
    wait_writes_on(h, pgs, module_password, "node2", 10)
    # weights set by the script are the agent's, as a percentage of the
    # configured weight 100
    wait_for(lambda: {n: int(h.server("pg_read", n)["weight"]) for n in NODES}
             == {"node1": 100, "node2": 37, "node3": 80}, 5, desc="read weights 100/37/80")

    for label, data, close in bad_outputs():
        fake.serve_raw(data, close=close)
        t0 = time.monotonic()
        # until the good copy ages out, sessions may still land on node2,
        # and nowhere else
        while True:
            where = write_target(h, pgs, module_password, timeout=2)
            assert where in ("node2", None), f"{label}: a session landed on {where}"
            assert h.proc.poll() is None, f"{label}: haproxy exited\n{h.log()[-3000:]}"
            if where is None:
                break
            assert time.monotonic() - t0 < MAX_AGE_MS / 1000 + 10, f"{label}: never refused"
            time.sleep(0.1)
        wait_for(lambda: ready_servers(h, "pg_write") == [], 5, desc=f"{label}: MAINT")
        # and back to a good status before the next one
        fake.serve(compact_doc(1, GOOD_NODES, write="node2", best="node1"))
        wait_writes_on(h, pgs, module_password, "node2", 10)

    fake.serve(compact_doc(2, GOOD_NODES, write="node3", best="node1"))
    wait_writes_on(h, pgs, module_password, "node3", 10)
    assert h.proc.poll() is None


def show_map(haproxy):
    """HAProxy's in-memory copy of the map the script keeps: {key: value}."""
    out = {}
    for line in haproxy.command(f"show map {MAP_FILE}").splitlines():
        parts = line.split()
        if len(parts) == 3:
            out[parts[1]] = parts[2]
    return out


def test_map_follows_the_agent(pgs, agent, haproxy, cluster_ok):
    """The map lookups the config routes on carry the agent's answer."""
    st = agent.status_json()
    want = {"write_node": "node1", "best_node": st["best_node"],
            "best_replica": st["best_replica"]}
    assert st["best_replica"] in ("node2", "node3"), st
    for name in NODES:
        want[f"ready.{name}"] = "1"
        want[f"weight.{name}"] = "100"
    wait_for(lambda: show_map(haproxy) == want, 5, desc=f"map {want}")
    pgs["node3"].kill()
    agent.wait_state("node3", "down", 10)
    del want["ready.node3"], want["weight.node3"]
    st = agent.status_json()
    want["best_node"], want["best_replica"] = st["best_node"], st["best_replica"]
    assert st["best_replica"] == "node2", st
    wait_for(lambda: show_map(haproxy) == want, 5, desc=f"map {want}")


FETCH_CFG = """
global
    log stderr format short local0 info
    stats socket "${PGBDR_STATS_SOCKET}" mode 600 level admin
    setenv PGBDR_LUA_AGENTS "${PGBDR_AGENTS}"
    setenv PGBDR_LUA_INTERVAL 100
    setenv PGBDR_LUA_MAX_AGE 1500
    lua-load "${PGBDR_LUA_SCRIPT}"

defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s

frontend fetches
    bind "${PGBDR_HTTP_LISTEN}"
    http-request return status 200 content-type text/plain lf-string "write=%[lua.pgbdr_write_node] best=%[lua.pgbdr_best_node] ready1=%[lua.pgbdr_ready(node1)] ready3=%[lua.pgbdr_ready(node3)] ready9=%[lua.pgbdr_ready(node9)] weight2=%[lua.pgbdr_weight(node2)]\\n"
"""


def test_sample_fetches(module_registry):
    """lua.pgbdr_* answer from the copy, and answer "no node" once it is old."""
    fake = module_registry.add(FakeAgent().start())
    fake.serve(compact_doc(1, GOOD_NODES, write="node3", best="node1"))
    d = module_registry.mkdtemp("lua-fetch-cfg")
    cfg = os.path.join(d, "fetches.cfg")
    with open(cfg, "w") as f:
        f.write(FETCH_CFG)
    port = free_port()
    h = HAProxy(module_registry, cfg, {"PGBDR_AGENTS": fake.addr, "PGBDR_LUA_SCRIPT": LUA_SCRIPT,
                                       "PGBDR_HTTP_LISTEN": f"127.0.0.1:{port}"}).start()

    def body():
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=3) as r:
            return r.read().decode().strip()
    fresh = "write=node3 best=node1 ready1=1 ready3=1 ready9=0 weight2=37"
    wait_for(lambda: body() == fresh, 10, desc=fresh)
    fake.serve(b"garbage\n")
    stale = "write= best= ready1=0 ready3=0 ready9=0 weight2=0"
    wait_for(lambda: body() == stale, 10, desc=stale)
    assert "not a pgbdr-compact 1 document" in h.log()
