"""HAProxy ($PGBDR_HAPROXY: Debian's 2.6, or 3.0 to 3.4 in .ci/run's
matrix) with filter spoe, running haproxy-examples/spoe-http.cfg
and spoe-tcp.cfg AS IS (configured only through the environment
variables they reference) with haproxy-examples/pgbdr-spoe.conf, against
one agent watching three PostgreSQL servers, each with the emulated BDR
1 catalog (fixtures/bdr1_emulation.sql). Where HAProxy versions differ
(3.1 rewrote SPOE), a test asserts each version's documented behaviour."""

import http.client
import os

import psycopg2
import pytest

import harness
from harness import (FAST_AGENT, FIXTURES_DIR, HAPROXY_EXAMPLES, Agent, HAProxy, PgServer,
                     free_port, wait_for)

NODES = ("node1", "node2", "node3")
# HAProxy 3.1 rewrote SPOE: no fragmentation, "mode spop" backends.
NEW_SPOE = harness.haproxy_version() >= (3, 1)
SERVING = ("ready", "degraded")
SPOE_CONF = os.path.join(HAPROXY_EXAMPLES, "pgbdr-spoe.conf")


@pytest.fixture(scope="module")
def pgs(module_registry, module_password):
    out = {}
    for name in NODES:
        pg = PgServer(module_registry, name, pglogical=False).init().start()
        pg.create_database("app")
        pg.run_file(os.path.join(FIXTURES_DIR, "bdr1_emulation.sql"), dbname="app")
        pg.sql("SELECT bdr.emulation_setup(%s, VARIADIC %s)",
               (name, [n for n in NODES if n != name]), dbname="app")
        pg.apply_grants("bdr", dbname="app", password=module_password)
        out[name] = pg
    return out


@pytest.fixture(scope="module")
def agent(module_registry, pgs, module_password):
    spoe_port = free_port()
    sections = [("agent", dict(FAST_AGENT, spoe_listen=f"127.0.0.1:{spoe_port}",
                               leader_handover="300ms"))]
    for i, name in enumerate(NODES, 1):
        sections.append((f"node.{name}", {"dsn": pgs[name].tcp_dsn("app", password=module_password),
                                          "flavor": "bdr", "priority": 100 * i}))
    a = Agent(module_registry, sections, name="agent-spoe").start()
    a.spoe_port = spoe_port
    for name in NODES:
        a.wait_state(name, "ready", 15)
    wait_for(lambda: a.node("node1")["write_leader"], 15, desc="node1 leads")
    # A node's lag is read from its peers' slots, so it is known only once
    # every peer has been probed; the header tests compare against it.
    wait_for(lambda: all(a.node(n)["lag_bytes"] is not None for n in NODES), 15,
             desc="every node's lag is known")
    return a


def haproxy_env(agent):
    return {"PGBDR_SPOE_CONF": SPOE_CONF,
            "PGBDR_SPOE_AGENT": f"127.0.0.1:{agent.spoe_port}",
            "PGBDR_SPOE_CHECK_INTER": "500ms"}


@pytest.fixture(scope="module")
def http_haproxy(module_registry, agent):
    ports = {k: free_port() for k in ("filter", "frag", "nofilter")}
    env = dict(haproxy_env(agent),
               PGBDR_HTTP_LISTEN=f"127.0.0.1:{ports['filter']}",
               PGBDR_HTTP_FRAG_LISTEN=f"127.0.0.1:{ports['frag']}",
               PGBDR_HTTP_NOFILTER_LISTEN=f"127.0.0.1:{ports['nofilter']}")
    h = HAProxy(module_registry, "spoe-http.cfg", env)
    r = h.check_config()
    assert r.returncode == 0, r.stdout + r.stderr
    h.ports = ports
    return h.start()


@pytest.fixture(scope="module")
def tcp_haproxy(module_registry, agent, pgs):
    listen, read_listen = free_port(), free_port()
    env = dict(haproxy_env(agent), PGBDR_PG_LISTEN=f"127.0.0.1:{listen}",
               PGBDR_PG_READ_LISTEN=f"127.0.0.1:{read_listen}")
    for i, name in enumerate(NODES, 1):
        env[f"PGBDR_NODE{i}"] = f"127.0.0.1:{pgs[name].port}"
    h = HAProxy(module_registry, "spoe-tcp.cfg", env)
    r = h.check_config()
    assert r.returncode == 0, r.stdout + r.stderr
    h.listen_port, h.read_port = listen, read_listen
    return h.start()


def test_example_files_are_valid_with_their_defaults():
    import subprocess
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGBDR_")}
    # Only the engine file's path must exist; everything else keeps its default.
    env["PGBDR_SPOE_CONF"] = SPOE_CONF
    for cfg in ("spoe-http.cfg", "spoe-tcp.cfg"):
        r = subprocess.run([harness.HAPROXY_BIN, "-c", "-f", os.path.join(HAPROXY_EXAMPLES, cfg)],
                           env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        # no warning either (a timeout this version ignores, a wrong mode)
        assert "WARNING" not in r.stdout + r.stderr, r.stdout + r.stderr


def test_agents_backend_mode_follows_the_version(http_haproxy):
    """3.1+ runs the agents' backend in mode spop, 2.6 to 3.0 in mode tcp."""
    rows = [r for r in http_haproxy.show_stat()
            if r["pxname"] == "pgbdr_agents" and r["svname"] in ("agent1", "BACKEND")]
    assert len(rows) == 2, rows
    for r in rows:
        assert r["mode"] == ("spop" if NEW_SPOE else "tcp"), r


# --------------------------------------------------------------------------
# HTTP: the variables in response headers
# --------------------------------------------------------------------------

def get(port, node=None, extra_headers=None):
    headers = {}
    if node:
        headers["X-Pgbdr-Node"] = node
    headers.update(extra_headers or {})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/", headers=headers)
        r = conn.getresponse()
        r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders() if k.lower().startswith("x-pgbdr-")}
    finally:
        conn.close()


def expected_headers(status, name=None):
    nodes = status["nodes"]
    serving = sorted((n for n in nodes if n["state"] in SERVING),
                     key=lambda n: (n["lag_bytes"] is None, n["lag_bytes"] or 0, n["name"]))
    name = name or status["default_node"]
    node = next(n for n in nodes if n["name"] == name)
    out = {
        "x-pgbdr-ready": "1" if node["state"] in SERVING else "0",
        "x-pgbdr-weight": str(node["weight"]),
        "x-pgbdr-state": node["state"],
        "x-pgbdr-reason": node["reason"] or "",
        "x-pgbdr-write-node": next((n["name"] for n in nodes if n["write_leader"]), ""),
        "x-pgbdr-best-node": serving[0]["name"] if serving else "",
        "x-pgbdr-ready-nodes": str(len(serving)),
    }
    if node["lag_bytes"] is not None:
        out["x-pgbdr-lag-bytes"] = str(node["lag_bytes"])
    return out


def headers_match_status(agent, port, node=None, extra_headers=None):
    """One request whose headers equal what /status says, read just
    before and just after (lag moves with WAL: retry until stable)."""
    def attempt():
        before = agent.status_json()
        code, headers = get(port, node, extra_headers)
        after = agent.status_json()
        want = expected_headers(before, node)
        if want != expected_headers(after, node):
            return False
        assert code == 200
        return headers if headers == want else False
    try:
        return wait_for(attempt, 10, desc=f"headers for {node} match /status")
    except AssertionError:
        code, headers = get(port, node, extra_headers)
        raise AssertionError(f"headers {headers}\n/status wants "
                             f"{expected_headers(agent.status_json(), node)}") from None


def test_agents_backend_up_by_spop_check(http_haproxy):
    row = http_haproxy.wait_for_status("pgbdr_agents", "agent1", "UP", 10)
    assert row["check_status"].startswith("L7"), row


def test_headers_carry_the_variables(agent, http_haproxy):
    port = http_haproxy.ports["filter"]
    h = headers_match_status(agent, port)
    assert h["x-pgbdr-state"] == "ready" and h["x-pgbdr-ready"] == "1", h
    assert h["x-pgbdr-write-node"] == "node1" and h["x-pgbdr-ready-nodes"] == "3", h
    assert "x-pgbdr-lag-bytes" in h and "x-pgbdr-error" not in h, h
    for name in NODES:
        headers_match_status(agent, port, name)


def test_unknown_node_header(agent, http_haproxy):
    code, h = get(http_haproxy.ports["filter"], "nosuch")
    assert code == 200
    assert h["x-pgbdr-state"] == "unknown" and h["x-pgbdr-ready"] == "0", h
    assert h["x-pgbdr-reason"] == "unknown node nosuch", h
    assert "x-pgbdr-lag-bytes" not in h


def test_no_filter_frontend_has_no_variables(http_haproxy):
    code, h = get(http_haproxy.ports["nofilter"])
    assert code == 200
    assert h["x-pgbdr-state"] == "" and "x-pgbdr-error" not in h, h


def flip(pgs, node, code):
    pgs[node].sql("UPDATE bdr.bdr_nodes SET node_status = %s WHERE node_name = %s", (code, node),
                  dbname="app")


def test_headers_follow_state_changes(agent, pgs, http_haproxy):
    port = http_haproxy.ports["filter"]
    flip(pgs, "node2", "c")
    try:
        agent.wait_state("node2", "down", 5, reason_re=r"join")
        h = headers_match_status(agent, port, "node2")
        assert h["x-pgbdr-state"] == "down" and h["x-pgbdr-ready"] == "0", h
        assert h["x-pgbdr-weight"] == "0" and "join" in h["x-pgbdr-reason"], h
        assert h["x-pgbdr-ready-nodes"] == "2", h
        h = headers_match_status(agent, port)
        assert h["x-pgbdr-state"] == "ready" and h["x-pgbdr-best-node"] != "node2", h
    finally:
        flip(pgs, "node2", "r")
    agent.wait_state("node2", "ready", 5)
    h = headers_match_status(agent, port, "node2")
    assert h["x-pgbdr-state"] == "ready" and h["x-pgbdr-ready-nodes"] == "3", h


def spop_metrics(agent):
    out = {}
    for line in agent.get("/metrics").text.splitlines():
        if line.startswith("pgbdr_spop_"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


@pytest.mark.parametrize("size", [3000, 12000])
def test_large_request_travels_in_fragments(agent, http_haproxy, size):
    """[pgbdr-frag] sends req.hdrs in 1 kB frames: HAProxy up to 3.0
    fragments the NOTIFY, the agent reassembles it and answers correctly.
    HAProxy 3.1 and later never fragment: the NOTIFY is not sent at all,
    txn.pgbdr.error is 3 (frame too big), and small requests on the same
    engine are still answered."""
    before = spop_metrics(agent)
    big = {"X-Big": "b" * size, "X-Other": "o" * 100}
    if NEW_SPOE:
        code, h = get(http_haproxy.ports["frag"], "node3", big)
        assert code == 200, code
        assert h.get("x-pgbdr-error") == "3" and h["x-pgbdr-state"] == "", h
        after = spop_metrics(agent)
        for key in ('pgbdr_spop_frames_received_total{type="unset"}',
                    'pgbdr_spop_fragmented_total{result="reassembled"}',
                    'pgbdr_spop_messages_total{message="other"}'):
            assert after.get(key) == before.get(key), (key, before, after)
        h = headers_match_status(agent, http_haproxy.ports["frag"], "node1")
        assert h["x-pgbdr-state"] == "ready" and "x-pgbdr-error" not in h, h
        return
    h = headers_match_status(agent, http_haproxy.ports["frag"], "node3", big)
    assert h["x-pgbdr-state"] == "ready", h
    after = spop_metrics(agent)
    reassembled = 'pgbdr_spop_fragmented_total{result="reassembled"}'
    unset = 'pgbdr_spop_frames_received_total{type="unset"}'
    assert after[reassembled] > before[reassembled], (before, after)
    assert after[unset] - before[unset] >= size // 1024, (before, after)
    # small requests on the same engine still work, unfragmented
    headers_match_status(agent, http_haproxy.ports["frag"], "node1")
    assert after['pgbdr_spop_disconnects_total{status="4"}'] == 0, after


def test_many_requests_all_answered(agent, http_haproxy):
    port = http_haproxy.ports["filter"]
    for i in range(200):
        code, h = get(port, NODES[i % 3])
        assert code == 200 and h["x-pgbdr-state"] == "ready", (i, h)
    m = spop_metrics(agent)
    for key, value in m.items():
        if key.startswith("pgbdr_spop_disconnects_total") and 'status="0"' not in key:
            assert value == 0, (key, m)


# --------------------------------------------------------------------------
# TCP: PostgreSQL sessions land on the write leader
# --------------------------------------------------------------------------

def server_port_via(haproxy, password, port=None):
    conn = psycopg2.connect(host="127.0.0.1", port=port or haproxy.listen_port, dbname="app",
                            user="pgbdr_monitor", password=password, connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT inet_server_port()")
            return cur.fetchone()[0]
    finally:
        conn.close()


def test_tcp_sessions_follow_the_write_leader(agent, pgs, tcp_haproxy, module_password):
    tcp_haproxy.wait_for_status("pgbdr_agents", "agent1", "UP", 10)
    for _ in range(5):
        assert server_port_via(tcp_haproxy, module_password) == pgs["node1"].port
    pgs["node1"].stop()
    try:
        agent.wait_state("node1", "down", 10)
        wait_for(lambda: agent.node("node2")["write_leader"], 10, desc="node2 leads")

        def lands_on_node2():
            try:
                return server_port_via(tcp_haproxy, module_password) == pgs["node2"].port
            except psycopg2.OperationalError:
                return False
        wait_for(lands_on_node2, 10, desc="new sessions land on node2")
        for _ in range(5):
            assert server_port_via(tcp_haproxy, module_password) == pgs["node2"].port
    finally:
        pgs["node1"].start()
    agent.wait_state("node1", "ready", 15)


def test_tcp_refused_without_write_leader(agent, pgs, tcp_haproxy, module_password):
    """Fail closed: with no write leader the client is refused, not sent
    to some node."""
    for name in NODES:
        flip(pgs, name, "k")
    try:
        for name in NODES:
            agent.wait_state(name, "down", 10)
        wait_for(lambda: agent.status_json() and not any(
            n["write_leader"] for n in agent.status_json()["nodes"]), 10, desc="no leader")
        with pytest.raises(psycopg2.OperationalError):
            server_port_via(tcp_haproxy, module_password)
    finally:
        for name in NODES:
            flip(pgs, name, "r")
    for name in NODES:
        agent.wait_state(name, "ready", 10)
    wait_for(lambda: any(n["write_leader"] for n in agent.status_json()["nodes"]), 15,
             desc="a leader again")

    def lands_on_leader():
        leader = next(n["name"] for n in agent.status_json()["nodes"] if n["write_leader"])
        try:
            return server_port_via(tcp_haproxy, module_password) == pgs[leader].port
        except psycopg2.OperationalError:
            return False
    wait_for(lands_on_leader, 10, desc="sessions land on the leader again")


# --------------------------------------------------------------------------
# TCP reads: the least lagged replica within the limit ([pgbdr-read], 16MB)
# --------------------------------------------------------------------------

MB = 1024 * 1024


def set_lag(pgs, name, lag):
    """Node `name` is `lag` bytes behind: its peers' slots for it say so."""
    for peer in NODES:
        if peer != name:
            pgs[peer].sql("UPDATE bdr.bdr_node_slots SET replay_location ="
                          " pg_current_wal_lsn() - %s::numeric WHERE node_name = %s",
                          (lag, name), dbname="app")


def fill_wal(pg, past):
    while pg.scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')") <= past:
        pg.sql("CREATE TABLE IF NOT EXISTS walfill (x int); INSERT INTO walfill VALUES (1);"
               " SELECT pg_switch_wal()", dbname="app")


def lag_near(agent, node, lag):
    """The agent sees node `lag` bytes behind (WAL written since adds a little)."""
    seen = agent.node(node)["lag_bytes"]
    return seen is not None and lag <= seen < lag + MB


def sessions(haproxy, node):
    """Sessions HAProxy has sent to node's backend so far (show stat stot)."""
    row = next(r for r in haproxy.show_stat()
               if r["pxname"] == f"pg_{node}" and r["svname"] == "BACKEND")
    return int(row["stot"])


def read_lands_on(haproxy, pgs, password, node):
    """A new read session goes to node: its server answers, and HAProxy
    counts the session on node's backend and on no other."""
    before = {n: sessions(haproxy, n) for n in NODES}
    try:
        port = server_port_via(haproxy, password, haproxy.read_port)
    except psycopg2.OperationalError:
        return False
    after = {n: sessions(haproxy, n) for n in NODES}
    grew = {n for n in NODES if after[n] > before[n]}
    return port == pgs[node].port and grew == {node}


def test_tcp_reads_go_to_the_least_lagged_replica_within_the_limit(agent, pgs, tcp_haproxy,
                                                                    module_password):
    tcp_haproxy.wait_for_status("pgbdr_agents", "agent1", "UP", 10)
    for pg in pgs.values():
        fill_wal(pg, 64 * MB)
    try:
        # node1 leads, so it is no replica: node3 (4MB) beats node2 (8MB)
        set_lag(pgs, "node2", 8 * MB)
        set_lag(pgs, "node3", 4 * MB)
        wait_for(lambda: lag_near(agent, "node3", 4 * MB) and lag_near(agent, "node2", 8 * MB),
                 10, desc="lags seen")
        # after a failover, node1 takes the role back once leader_return_delay passed
        wait_for(lambda: agent.node("node1")["write_leader"], 20, desc="node1 leads")
        wait_for(lambda: read_lands_on(tcp_haproxy, pgs, module_password, "node3"), 10,
                 desc="reads on node3")
        for _ in range(3):
            assert read_lands_on(tcp_haproxy, pgs, module_password, "node3")

        # node3 falls 40MB behind, over the 16MB limit: node2 is the best left
        set_lag(pgs, "node3", 40 * MB)
        wait_for(lambda: read_lands_on(tcp_haproxy, pgs, module_password, "node2"), 10,
                 desc="reads move to node2")
        for _ in range(3):
            assert read_lands_on(tcp_haproxy, pgs, module_password, "node2")

        # both over the limit: no replica fits, the client is refused
        set_lag(pgs, "node2", 20 * MB)
        wait_for(lambda: lag_near(agent, "node2", 20 * MB), 10, desc="node2 lags")

        def refused():
            try:
                server_port_via(tcp_haproxy, module_password, tcp_haproxy.read_port)
            except psycopg2.OperationalError:
                return True
            return False
        wait_for(refused, 10, desc="reads refused")
        before = {n: sessions(tcp_haproxy, n) for n in NODES}
        assert refused()
        assert {n: sessions(tcp_haproxy, n) for n in NODES} == before
    finally:
        for name in NODES:
            pgs[name].sql("SELECT bdr.emulation_setup(%s, VARIADIC %s)",
                          (name, [n for n in NODES if n != name]), dbname="app")
    wait_for(lambda: all(lag_near(agent, n, 0) for n in NODES), 15, desc="caught up")
