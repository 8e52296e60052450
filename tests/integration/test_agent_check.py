"""agent-check: HAProxy 2.6 runs haproxy-examples/agent-check.cfg AS IS
against three agents, one per emulated BDR node (fixtures/
bdr1_emulation.sql: NOT BDR, its catalog on PostgreSQL 15), each with
agent_listen. A node's lag is read where it is known, in its peers'
slots for it, so each host's agent watches its own node (the default
node, answered to HAProxy's silent check) and its peers. Replication lag
set in the emulated bdr.bdr_node_slots must show up as HAProxy weights
of the node that is behind, the maintenance file as DRAIN. Then the raw protocol (one node, several
nodes, write, unknown node, silence, garbage) and allow_from on every
listener."""

import os
import time

import psycopg2
import pytest

from agentcheck_helpers import (MB, accepting, agent_check, connect, http_get_from, read_all,
                                servers, touch, wait_server)
import harness
from harness import (FAST_AGENT, FIXTURES_DIR, HAPROXY_EXAMPLES, Agent, HAProxy, PgServer,
                     free_port, wait_for)

NODES = ("node1", "node2", "node3")
BACKEND = "pg_bdr"
# A configured weight other than 100, so that the test tells "N% of the
# configured weight" apart from "N": HAProxy shows 200 * N / 100.
HAP_WEIGHT = 200
DRAIN_LAG = 16 * MB
MAX_LAG = 64 * MB
MIN_WEIGHT = 10
POLICY = {"drain_lag": "16MB", "max_lag": "64MB", "min_weight": MIN_WEIGHT}
# Agent probe (200 ms) + agent-inter (200 ms) + margin.
BUDGET = 5


def q(pg, db, sql, params=None):
    return pg.sql(sql, params, dbname=db)


def reset_node(pg, name):
    q(pg, name, "SELECT bdr.emulation_setup(%s, VARIADIC %s)",
      (name, [p for p in NODES if p != name]))


def set_lag(pg, name, lag, peer=None):
    """Node `name` is `lag` bytes behind: a peer's slot for it is."""
    peer = peer or next(p for p in NODES if p != name)
    q(pg, peer, "UPDATE bdr.bdr_node_slots SET replay_location = pg_current_wal_lsn() - %s::numeric"
                " WHERE node_name = %s", (lag, name))


@pytest.fixture(scope="module")
def pg(module_registry, module_password):
    pg = PgServer(module_registry, "agchk", pglogical=False).init().start()
    for name in NODES:
        pg.create_database(name)
        pg.run_file(os.path.join(FIXTURES_DIR, "bdr1_emulation.sql"), dbname=name)
        reset_node(pg, name)
        pg.apply_grants("bdr", dbname=name, password=module_password)
    # WAL is cluster-wide: past 2 * MAX_LAG, any lag up to there can be
    # set as "current LSN - lag".
    while pg.scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')") <= 2 * MAX_LAG:
        pg.sql("CREATE TABLE IF NOT EXISTS walfill (x int); INSERT INTO walfill VALUES (1);"
               " SELECT pg_switch_wal()")
    for name in NODES:
        reset_node(pg, name)   # slots caught up with the new WAL position
    return pg


def classic(pg, db, password):
    return ("postgresql", [("host", "127.0.0.1"), ("port", pg.port), ("database", db),
                           ("user", "pgbdr_monitor"), ("password", password)])


@pytest.fixture(scope="module")
def agents(module_registry, pg, module_password):
    """One agent per node, as on three database hosts: its own node first
    (the default one, what HAProxy's silent check gets after a short
    agent_send_wait), then the peers whose slots tell its lag."""
    out = {}
    for name in NODES:
        port = free_port()
        maint = os.path.join(module_registry.mkdtemp(f"maint-{name}"), "maintenance")
        a = Agent(module_registry, [
            ("agent", dict(FAST_AGENT, agent_listen=f"127.0.0.1:{port}", maintenance_file=maint,
                           agent_send_wait="50ms")),
            ("policy", POLICY),
        ] + [(f"node.{n}", {"dsn": pg.tcp_dsn(n, password=module_password), "flavor": "bdr"})
             for n in [name] + [p for p in NODES if p != name]], name=f"agent-{name}")
        a.agent_port, a.maintenance_file = port, maint
        out[name] = a.start()
    for name, a in out.items():
        a.wait_state(name, "ready", 10)
    return out


@pytest.fixture(scope="module")
def haproxy(module_registry, pg, agents):
    env = {
        "PGBDR_LISTEN": f"127.0.0.1:{free_port()}",
        "PGBDR_WEIGHT": str(HAP_WEIGHT),
        "PGBDR_AGENT_INTER": "200",
        "PGBDR_CHECK_INTER": "200",
        "PGBDR_CHECK_RISE": "1",
        "PGBDR_CHECK_FALL": "1",
    }
    for i, name in enumerate(NODES, 1):
        env[f"PGBDR_NODE{i}"] = f"127.0.0.1:{pg.port}"
        env[f"PGBDR_NODE{i}_AGENT_PORT"] = str(agents[name].agent_port)
    h = HAProxy(module_registry, os.path.join(HAPROXY_EXAMPLES, "agent-check.cfg"), env)
    r = h.check_config()
    assert r.returncode == 0, r.stdout + r.stderr
    h.listen_port = int(env["PGBDR_LISTEN"].rsplit(":", 1)[1])
    return h.start()


@pytest.fixture
def healthy(pg, agents, haproxy):
    """Each HAProxy case starts and ends with every node ready at full weight."""
    def restore():
        for name, a in agents.items():
            try:
                os.unlink(a.maintenance_file)
            except FileNotFoundError:
                pass
            reset_node(pg, name)
        for name, a in agents.items():
            a.wait_state(name, "ready", 10)
            wait_server(haproxy, BACKEND, name, lambda r: full_up(r), BUDGET, "UP at full weight")
    restore()
    yield
    restore()


def full_up(row):
    return (row["status"] == "UP" and row["weight"] == str(HAP_WEIGHT)
            and row["agent_status"].lstrip("* ") == "L7OK")


def expected_weight(lag):
    """The documented policy: 100% up to drain_lag, linear to min_weight
    at max_lag (rounded to nearest), down beyond."""
    if lag <= DRAIN_LAG:
        return 100
    return round(100 - (100 - MIN_WEIGHT) * (lag - DRAIN_LAG) / (MAX_LAG - DRAIN_LAG))


def wait_lag(agent, node, lag):
    """Wait until the agent has probed the lag just set (the worst active
    slot: at least `lag`, plus the little WAL written since)."""
    def seen():
        n = agent.node(node)
        return n if isinstance(n["lag_bytes"], int) and lag <= n["lag_bytes"] < lag + MB else False
    return wait_for(seen, BUDGET, desc=f"{node} lag_bytes ~ {lag}")


# --------------------------------------------------------------------------
# Through HAProxy
# --------------------------------------------------------------------------

def test_example_file_is_valid_with_its_defaults():
    import subprocess
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGBDR_")}
    r = subprocess.run([harness.HAPROXY_BIN, "-c", "-f", os.path.join(HAPROXY_EXAMPLES, "agent-check.cfg")],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_all_up_at_full_weight(haproxy, healthy):
    rows = servers(haproxy, BACKEND)
    assert sorted(rows) == list(NODES)
    for name, row in rows.items():
        assert full_up(row), row
        # The agent's words, as HAProxy saw them (the default node's reply
        # comes after agent_send_wait, so give HAProxy a check to see it).
        row = wait_server(haproxy, BACKEND, name,
                          lambda r: full_up(r) and r["last_agt"].startswith("via agent : up"),
                          BUDGET, "agent said up")


# lag -> agent weight (%) under drain 16MB / max 64MB / min 10
LAG_TABLE = [(8 * MB, 100), (16 * MB, 100), (34 * MB, 66), (40 * MB, 55), (58 * MB, 21)]


def test_expected_weight_table_matches_the_policy():
    for lag, pct in LAG_TABLE:
        assert expected_weight(lag) == pct, (lag, pct)


def test_lag_sets_haproxy_weight_then_down_then_back(pg, agents, haproxy, healthy):
    node, others = "node2", ("node1", "node3")
    seen = []
    for lag, pct in LAG_TABLE:
        set_lag(pg, node, lag)
        n = wait_lag(agents[node], node, lag)
        assert n["weight"] == pct and n["state"] == ("ready" if pct == 100 else "degraded"), n
        want = str(HAP_WEIGHT * pct // 100)
        row = wait_server(haproxy, BACKEND, node,
                          lambda r, w=want: r["status"] == "UP" and r["weight"] == w, BUDGET,
                          f"UP, weight {want} ({pct}% of {HAP_WEIGHT}) at lag {lag // MB}MB")
        seen.append((lag // MB, pct, row["weight"]))
        for other in others:
            assert full_up(haproxy.server(BACKEND, other)), haproxy.server(BACKEND, other)

    # Beyond max_lag: DOWN, with the agent's reason on HAProxy's page.
    set_lag(pg, node, 80 * MB)
    row = wait_server(haproxy, BACKEND, node, lambda r: r["status"].startswith("DOWN"), BUDGET,
                      "DOWN at 80MB")
    assert row["status"] == "DOWN (agent)", row
    assert row["agent_status"].lstrip("* ") == "L7STS", row
    assert "replication lag 80MB > 64MB" in row["last_agt"], row
    n = agents[node].node(node)
    assert n["state"] == "down" and n["weight"] == 0, n

    # Caught up: UP at the full configured weight again.
    set_lag(pg, node, 0)
    wait_server(haproxy, BACKEND, node, full_up, BUDGET, f"UP at weight {HAP_WEIGHT}")
    assert seen == [(lag // MB, pct, str(HAP_WEIGHT * pct // 100)) for lag, pct in LAG_TABLE]


def test_disconnected_peer_keeps_weight(pg, agents, haproxy, healthy):
    q(pg, "node3", "UPDATE bdr.bdr_node_slots SET walsender_active = false, walsender_pid = NULL"
                   " WHERE node_name = 'node1'")
    agents["node3"].wait_state("node3", "degraded", BUDGET, reason_re="node1")
    assert agents["node3"].node("node3")["weight"] == 100
    # HAProxy: still UP at full weight, the peer's absence is not lag.
    time.sleep(0.5)  # two more agent-checks
    row = haproxy.server(BACKEND, "node3")
    assert full_up(row), row


def session_counts(haproxy):
    return {name: int(row["stot"]) for name, row in servers(haproxy, BACKEND).items()}


def open_sessions(haproxy, password, n):
    for _ in range(n):
        conn = psycopg2.connect(host="127.0.0.1", port=haproxy.listen_port, dbname="node1",
                                user="pgbdr_monitor", password=password, connect_timeout=5)
        conn.close()


def test_maintenance_file_drains_then_restores(pg, agents, haproxy, healthy, module_password):
    node = "node1"
    a = agents[node]
    # Degraded first, so that "weight restored" means the lag weight.
    set_lag(pg, node, 40 * MB)
    degraded_weight = str(HAP_WEIGHT * 55 // 100)
    wait_server(haproxy, BACKEND, node, lambda r: r["weight"] == degraded_weight, BUDGET,
                f"weight {degraded_weight}")

    touch(a.maintenance_file)
    row = wait_server(haproxy, BACKEND, node, lambda r: r["status"].startswith("DRAIN"), BUDGET,
                      "DRAIN")
    assert row["status"] == "DRAIN (agent)", row
    assert not accepting(row)
    n = a.wait_state(node, "draining", 1)
    assert n["maintenance"] is True, n
    assert a.get("/").status == 503
    data, _ = agent_check(a.agent_port)
    assert data == b"up drain\n"

    # New sessions avoid the drained server.
    before = session_counts(haproxy)
    open_sessions(haproxy, module_password, 6)
    after = session_counts(haproxy)
    assert after[node] == before[node], (before, after)
    assert sum(after.values()) - sum(before.values()) == 6, (before, after)

    os.unlink(a.maintenance_file)
    row = wait_server(haproxy, BACKEND, node,
                      lambda r: r["status"] == "UP" and r["weight"] == degraded_weight, BUDGET,
                      f"UP at weight {degraded_weight} again")
    a.wait_state(node, "degraded", 1)
    set_lag(pg, node, 0)
    wait_server(haproxy, BACKEND, node, full_up, BUDGET, f"UP at weight {HAP_WEIGHT}")


# --------------------------------------------------------------------------
# The raw protocol
# --------------------------------------------------------------------------

SEND_WAIT = 0.6


@pytest.fixture(scope="module")
def multi(module_registry, pg, module_password):
    """One agent for all three nodes (node1 preferred for writes)."""
    port = free_port()
    sections = [("agent", dict(FAST_AGENT, agent_listen=f"127.0.0.1:{port}",
                               agent_send_wait=f"{int(SEND_WAIT * 1000)}ms",
                               leader_return_delay="1s", leader_handover="300ms")),
                ("policy", POLICY)]
    for i, name in enumerate(NODES, 1):
        sections.append((f"node.{name}", {
            "dsn": pg.tcp_dsn(name, password=module_password), "flavor": "bdr",
            "priority": 10 * i}))
    a = Agent(module_registry, sections, name="agent-multi")
    a.agent_port = port
    a.start()
    for name in NODES:
        a.wait_state(name, "ready", 10)
    wait_for(lambda: a.status_json().get("write_node") == "node1", 10, desc="write_node node1")
    return a


@pytest.fixture
def multi_healthy(pg, multi):
    for name in NODES:
        reset_node(pg, name)
    for name in NODES:
        multi.wait_state(name, "ready", 10)
    wait_for(lambda: multi.status_json().get("write_node") == "node1", 10, desc="write_node node1")
    yield multi
    for name in NODES:
        reset_node(pg, name)


def single_node_agent(registry, pg, name, password):
    """A classic one-node agent, as on a database host with the old
    database.ini: it answers HAProxy's agent-check for its node."""
    port = free_port()
    a = Agent(registry, [
        classic(pg, name, password),
        ("agent", dict(FAST_AGENT, agent_listen=f"127.0.0.1:{port}")),
    ], name=f"agent-single-{name}").start()
    a.agent_port = port
    a.wait_state(name, "ready", 10)
    return a


def test_one_node_reads_agent_send(module_registry, pg, module_password, healthy):
    """A single-node agent reads HAProxy's agent-send line too: "NAME
    write" asks about writes, and its answer agrees with /write."""
    a3 = single_node_agent(module_registry, pg, "node3", module_password)
    a1 = single_node_agent(module_registry, pg, "node1", module_password)
    data, elapsed = agent_check(a3.agent_port, b"\n")
    assert data == b"up ready 100%\n"
    assert elapsed < 0.3, elapsed              # a line: no need to wait
    data, _ = agent_check(a3.agent_port, b"node3\n")
    assert data == b"up ready 100%\n"
    # node3's catalog lists node1 and node2: node1 leads by name.
    wait_for(lambda: a3.status_json()["write_node"] == "node1", 10, desc="node3 sees node1")
    data, _ = agent_check(a3.agent_port, b"node3 write\n")
    assert data == b"down ready #not the write leader (leader: node1)\n", data
    assert a3.get("/write").status == 503
    wait_for(lambda: a1.status_json()["write_node"] == "node1", 10, desc="node1 leads")
    data, _ = agent_check(a1.agent_port, b"node1 write\n")
    assert data == b"up ready 100%\n", data
    assert a1.get("/write").status == 200
    # Nothing sent: the node's own answer once agent_send_wait is over.
    data, elapsed = agent_check(a3.agent_port)
    assert data == b"up ready 100%\n"
    assert elapsed >= 0.4, elapsed
    a3.stop()
    a1.stop()


def test_multi_node_by_name(pg, multi_healthy):
    m = multi_healthy
    set_lag(pg, "node2", 40 * MB)
    m.wait_state("node2", "degraded", BUDGET)
    q(pg, "node3", "UPDATE bdr.bdr_nodes SET node_status = 'k' WHERE node_name = 'node3'")
    m.wait_state("node3", "down", BUDGET)
    cases = [
        (b"node1\n", b"up ready 100%\n"),
        (b"node2\n", b"up ready 55%\n"),
        (b"node1\r\n", b"up ready 100%\n"),         # CRLF
        (b"  node2 \t\n", b"up ready 55%\n"),      # blanks around
    ]
    for send, want in cases:
        data, elapsed = agent_check(m.agent_port, send)
        assert data == want, (send, data)
        assert elapsed < SEND_WAIT, (send, elapsed)   # answered on the line, not the timer
    data, _ = agent_check(m.agent_port, b"node3\n")
    assert data.startswith(b"down ready #") and b"part" in data.lower(), data
    assert data.endswith(b"\n") and data.count(b"\n") == 1, data
    # The line may arrive in pieces.
    data, _ = agent_check(m.agent_port, chunks=[b"no", b"de2", b"\n"])
    assert data == b"up ready 55%\n", data


def test_write_duty(pg, multi_healthy):
    m = multi_healthy
    for send in (b"node1 write\n", b"node1 WRITE\n", b"node1,write\n", b"node1\twrite\r\n"):
        data, _ = agent_check(m.agent_port, send)
        assert data == b"up ready 100%\n", (send, data)
    data, _ = agent_check(m.agent_port, b"node2 write\n")
    assert data == b"down ready #not the write leader (leader: node1)\n", data
    # A degraded leader still takes all writes: "write" is all or nothing.
    set_lag(pg, "node1", 40 * MB)
    m.wait_state("node1", "degraded", BUDGET)
    data, _ = agent_check(m.agent_port, b"node1 write\n")
    assert data == b"up ready 100%\n", data
    data, _ = agent_check(m.agent_port, b"node1\n")
    assert data == b"up ready 55%\n", data


def test_unknown_node(multi_healthy):
    data, _ = agent_check(multi_healthy.agent_port, b"nosuchnode\n")
    assert data == b"down ready #unknown node nosuchnode\n", data
    data, _ = agent_check(multi_healthy.agent_port, b"nosuchnode write\n")
    assert data == b"down ready #unknown node nosuchnode\n", data


def test_silent_client_gets_default_node_after_wait(pg, multi_healthy):
    m = multi_healthy
    default = m.status_json()["default_node"]
    assert default == "node1"
    set_lag(pg, "node1", 40 * MB)
    m.wait_state("node1", "degraded", BUDGET)
    data, elapsed = agent_check(m.agent_port)
    assert data == b"up ready 55%\n", data
    assert SEND_WAIT - 0.05 <= elapsed < SEND_WAIT + 0.5, elapsed


def test_unterminated_name_is_not_answered_for_another_node(pg, multi_healthy):
    """agent-send "node3" without "\\n" (a common slip): after the wait
    the agent must not answer with the DEFAULT node's status, which
    would report a down node3 as up."""
    m = multi_healthy
    q(pg, "node3", "UPDATE bdr.bdr_nodes SET node_status = 'k' WHERE node_name = 'node3'")
    m.wait_state("node3", "down", BUDGET)
    with connect(m.agent_port) as s:
        s.sendall(b"node3")
        data = read_all(s, 3)
    assert data.startswith(b"down"), data


GARBAGE = [
    b"node1 write extra\n",
    b"node1 reads\n",                 # not a duty
    b"node1 read write\n",            # two duties
    b"node1 lag=abc\n",               # a limit that is no size
    b"node1 read lag_time=soon\n",
    # A NUL would cut a C string to "", i.e. the default node.
    b"\x00\xff\xfe garbage\n",
    b"\x00node3\n",
    b"\xff\xfe garbage\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"x" * 300,                       # over-long, no end of line
    b"y" * 5000 + b"\n",
]


@pytest.mark.parametrize("send", GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_gets_one_down_line(multi_healthy, send):
    data, elapsed = agent_check(multi_healthy.agent_port, send)
    # One line, a health word HAProxy knows, and never "up": garbage
    # must not pass for any node's health.
    assert data.endswith(b"\n") and data.count(b"\n") == 1, data
    assert data.startswith(b"down ready #"), data
    assert elapsed < SEND_WAIT + 1, elapsed
    # The agent is still there.
    assert agent_check(multi_healthy.agent_port, b"node1\n")[0] == b"up ready 100%\n"


def test_many_concurrent_checks(multi_healthy):
    socks = [connect(multi_healthy.agent_port) for _ in range(50)]
    try:
        for i, s in enumerate(socks):
            s.sendall(f"node{i % 3 + 1}\n".encode())
        replies = [read_all(s, 3) for s in socks]
    finally:
        for s in socks:
            s.close()
    assert all(r == b"up ready 100%\n" for r in replies), set(replies)


# --------------------------------------------------------------------------
# allow_from
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def guarded(module_registry, pg, module_password):
    """Listeners on 127.0.0.1 that only 127.0.0.2 may use."""
    ports = {"http": free_port(), "agent": free_port(), "spoe": free_port()}
    a = Agent(module_registry, [
        classic(pg, "node1", module_password),
        ("agent", dict(FAST_AGENT, http_listen=f"127.0.0.1:{ports['http']}",
                       agent_listen=f"127.0.0.1:{ports['agent']}",
                       spoe_listen=f"127.0.0.1:{ports['spoe']}",
                       allow_from="127.0.0.2/32")),
    ], name="agent-guarded", port=ports["http"])
    a.ports = ports
    a.start(wait=False)

    def ready():
        assert a.proc.poll() is None, a.log()
        r = http_get_from(ports["http"], "/node/node1", "127.0.0.2")
        return r.status == 200
    wait_for(ready, 10, desc="guarded agent: node1 ready, seen from 127.0.0.2")
    return a


@pytest.mark.parametrize("listener", ["agent", "http", "spoe"])
def test_refused_client_gets_zero_bytes(guarded, listener):
    port = guarded.ports[listener]
    with connect(port) as s:
        if listener == "http":
            try:
                s.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
        data = read_all(s, 2)
    assert data == b"", data
    assert guarded.proc.poll() is None


def test_allowed_source_is_served(guarded):
    data, _ = agent_check(guarded.ports["agent"], source="127.0.0.2")
    assert data == b"up ready 100%\n", data
    r = http_get_from(guarded.ports["http"], "/", "127.0.0.2")
    assert r.status == 200, r
    r = http_get_from(guarded.ports["http"], "/live", "127.0.0.2")
    assert r.status == 200, r
    # SPOP: accepted and kept open (the agent waits for HAPROXY-HELLO).
    with connect(guarded.ports["spoe"], source="127.0.0.2", timeout=0.5) as s:
        try:
            got = s.recv(1)
            pytest.fail(f"SPOP connection from an allowed source closed at once ({got!r})")
        except TimeoutError:
            pass
