"""BDR 1.0, for real: a three-node BDR 1 cluster on 2ndQuadrant's patched
PostgreSQL 9.4 (built from $PGBDR_PEERS by tests/peers/build.sh), watched
by one agent that connects as pgbdr_monitor with only sql/grants/bdr.sql.

Every state here is produced by BDR itself: a join, a read-only node
(bdr.bdr_node_set_read_only), a stopped peer, lag under load, a paused
apply (bdr.bdr_apply_pause), a part (bdr.bdr_part_by_node_names). The
classic checker's own scenario runs end to end: the README's HAProxy
`listen` block with `option httpchk` against one checker per node,
first pgbdr-agent --inetd under an inetd, then the daemon.

The emulation (test_bdr_emulation.py) stays for what real BDR cannot be
driven into here: the transient join phases b/i/c/o held still, a local
node missing from bdr.bdr_nodes, and bdr_is_active_in_db() false on a
node that is in the group.

Expected states follow design.md: a node's lag is how far its OWN data
is behind its peers.
"""

import os
import re
import threading
import time

import psycopg2
import pytest

import harness
import peers
from harness import FAST_AGENT, HAProxy, ROOT, free_port, wait_for, write_config
from inetd_runner import InetdRunner
from real_bdr import BDR_DB, BdrServer, start_join

pytestmark = pytest.mark.peers
peers.require()

NODES = ("node1", "node2", "node3")
MB = 1024 * 1024
POLICY = {"drain_lag": "4MB", "max_lag": "16MB", "min_weight": 10, "read_only": "down"}
SERVING = ("ready", "degraded")


@pytest.fixture(scope="module")
def prefix():
    return peers.build("bdr")


@pytest.fixture(scope="module")
def cluster(module_registry, prefix, module_password):
    """node1 and node2 in the group; node3 prepared, joined by test_join."""
    out = {}
    for name in NODES:
        out[name] = BdrServer(module_registry, name, prefix).init().start()
    for pg in out.values():
        # Roles are cluster-wide and BDR does not replicate them: create
        # the monitoring role everywhere before any data is copied.
        pg.sql("CREATE ROLE pgbdr_monitor LOGIN")
        pg.prepare()
    out["node1"].group_create()
    out["node2"].group_join(out["node1"])
    # sql/grants/bdr.sql, as the README says: in every BDR database
    # (node3's once it has joined).
    for name in ("node1", "node2"):
        out[name].apply_grants("bdr", dbname=BDR_DB, password=module_password)
    out["node1"].q("CREATE TABLE load (id bigint PRIMARY KEY, pad text)")
    return out


def node_sections(cluster, password):
    return [(f"node.{n}", {"dsn": cluster[n].tcp_dsn(BDR_DB, password=password)}) for n in NODES]


@pytest.fixture(scope="module")
def agent(module_registry, cluster, module_password):
    a = harness.Agent(module_registry, [("agent", dict(FAST_AGENT)), ("policy", POLICY)]
                      + node_sections(cluster, module_password), name="agent-real-bdr").start()
    for n in ("node1", "node2"):
        a.wait_state(n, "ready", 30)
    return a


def all_ready(agent, names=("node1", "node2", "node3"), timeout=60):
    for n in names:
        agent.wait_state(n, "ready", timeout)


def test_least_privilege_role_reads_real_bdr(cluster, agent):
    """sql/grants/bdr.sql is enough on real BDR 1.0: the agent, as
    pgbdr_monitor (no superuser, no replication), sees the node ready,
    detects the flavor and reads the peers from the catalog."""
    for n in ("node1", "node2"):
        row = cluster[n].scalar("SELECT rolsuper OR rolreplication FROM pg_roles"
                                " WHERE rolname = 'pgbdr_monitor'")
        assert row is False
        st = agent.node(n)
        assert st["state"] == "ready" and st["flavor"] == "bdr" and st["weight"] == 100, st
        assert st["user"] == "pgbdr_monitor", st
        # 9.4 hides replay_location from it; bdr.sql's one SECURITY
        # DEFINER function gives it the slot positions, and only to it.
        fn = cluster[n].q(
            "SELECT p.prosecdef, pg_get_function_result(p.oid),"
            " has_function_privilege('pgbdr_monitor', p.oid, 'EXECUTE'),"
            " EXISTS (SELECT 1 FROM aclexplode(p.proacl) a WHERE a.grantee = 0)"
            " FROM pg_proc p JOIN pg_namespace s ON s.oid = p.pronamespace"
            " WHERE s.nspname = 'pgbdr_agent'")
        assert fn == [(True, "TABLE(node_name text, replay_location pg_lsn)", True, False)], fn
    assert agent.get("/node/node1").status == 200


def test_join(cluster, agent, module_password):
    """node3 is down while it is not in the group, comes up when BDR says
    its join is done, and the running join never shows it serving."""
    n3 = agent.wait_state("node3", "down", 30)
    assert n3["reason"], n3
    seen = []
    t = start_join(cluster["node3"], cluster["node1"])
    while t.is_alive():
        st = agent.node("node3")
        seen.append((st["state"], st["reason"], cluster["node3"].status()))
        time.sleep(0.1)
    t.join()
    assert t.error is None, t.error
    assert cluster["node3"].status() == [("r",)]
    cluster["node3"].apply_grants("bdr", dbname=BDR_DB, password=module_password)
    agent.wait_state("node3", "ready", 30)
    # Until BDR marked node3 ready ('r'), the agent never called it ready.
    for state, reason, status in seen:
        if status != [("r",)]:
            assert state == "down", (state, reason, status)


def set_read_only(cluster, name, on):
    # On the node itself: run elsewhere, BDR 1.0 writes that node's whole
    # bdr_nodes row from the caller's copy, whose node_status may still be
    # the joining 'i' the caller saw last, and replicates it back.
    cluster[name].q("SELECT bdr.bdr_node_set_read_only(%s, %s)", (name, on))


def test_read_only_node_goes_down(cluster, agent):
    all_ready(agent)
    set_read_only(cluster, "node2", True)
    try:
        n = agent.wait_state("node2", "down", 30, reason_re=r"read.?only")
        assert n["weight"] == 0 and n["read_only"] is True, n
        assert agent.get("/node/node2").status == 503
        assert agent.node("node1")["state"] == "ready"
    finally:
        set_read_only(cluster, "node2", False)
    agent.wait_state("node2", "ready", 30)


# --------------------------------------------------------------------------
# The classic checker's scenario: HAProxy's listen block from the README,
# one checker per node on its own port, as xinetd served check.py.
# --------------------------------------------------------------------------

def readme_listen_block():
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    m = re.search(r"```\n(listen pg_bdr\n.*?)```", text, re.S)
    assert m, "README has no `listen pg_bdr` block"
    return m.group(1)


def classic_haproxy(registry, cluster, check_ports):
    """The README's block with only its addresses replaced, behind a
    global section with a stats socket."""
    block = readme_listen_block()
    listen = free_port()
    block = block.replace("bind :5432", f"bind 127.0.0.1:{listen}")
    for i, n in enumerate(NODES, 1):
        block = block.replace(f"10.0.0.{i}:5432 check port 9200",
                              f"127.0.0.1:{cluster[n].port} check port {check_ports[n]}")
    assert "10.0.0." not in block and "9200" not in block, block
    d = registry.mkdtemp("classic-haproxy")
    cfg = os.path.join(d, "haproxy.cfg")
    with open(cfg, "w") as f:
        f.write('global\n    stats socket "${PGBDR_STATS_SOCKET}" mode 600 level admin\n\n'
                "defaults\n    timeout connect 2s\n    timeout client 30s\n"
                "    timeout server 30s\n\n" + block)
    h = HAProxy(registry, cfg, {})
    r = h.check_config()
    assert r.returncode == 0, r.stdout + r.stderr
    h.listen_port = listen
    return h.start()


def classic_config(registry, pg, password, http_port=None):
    """The classic [postgresql] section: one checker per node."""
    agent = dict(FAST_AGENT, allow_root="yes", log_level="warning")
    if http_port:
        agent["http_listen"] = f"127.0.0.1:{http_port}"
    return write_config(registry, [
        ("postgresql", [("host", "127.0.0.1"), ("port", pg.port), ("database", BDR_DB),
                        ("user", "pgbdr_monitor"), ("password", password)]),
        ("agent", agent), ("policy", POLICY)], f"classic-{pg.name}")


def session_port(h, password):
    conn = psycopg2.connect(host="127.0.0.1", port=h.listen_port, dbname=BDR_DB,
                            user="pgbdr_monitor", password=password, connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT inet_server_port()")
            return cur.fetchone()[0]
    finally:
        conn.close()


def classic_scenario(cluster, h, password):
    """All up (node3 as the backup), sessions on the active nodes; a
    read-only node2 goes DOWN in HAProxy and comes back."""
    for n in NODES:
        h.wait_for_status("pg_bdr", n, "UP", 30)
    active = {cluster["node1"].port, cluster["node2"].port}
    for _ in range(4):
        assert session_port(h, password) in active
    set_read_only(cluster, "node2", True)
    try:
        row = h.wait_for_status("pg_bdr", "node2", "DOWN", 30)
        assert row["check_status"].lstrip("* ").startswith("L7"), row
        assert row["check_code"] == "503", row
        for _ in range(4):
            assert session_port(h, password) == cluster["node1"].port
    finally:
        set_read_only(cluster, "node2", False)
    h.wait_for_status("pg_bdr", "node2", "UP", 30)


def test_classic_scenario_through_inetd(module_registry, cluster, agent, module_password):
    all_ready(agent)
    ports = {n: free_port() for n in NODES}
    runners = {}
    for n in NODES:
        cfg = classic_config(module_registry, cluster[n], module_password)
        runners[n] = InetdRunner(module_registry, ports[n],
                                 [harness.agent_binary(), "-c", cfg, "--inetd"]).start()
    h = classic_haproxy(module_registry, cluster, ports)
    classic_scenario(cluster, h, module_password)
    assert all(r.served > 0 for r in runners.values()), {n: r.served for n, r in runners.items()}
    h.stop()


def test_classic_scenario_through_daemon(module_registry, cluster, agent, module_password):
    all_ready(agent)
    ports = {n: free_port() for n in NODES}
    for n in NODES:
        cfg = classic_config(module_registry, cluster[n], module_password, ports[n])
        with open(cfg) as f:
            harness.Agent(module_registry, f.read(), name=f"classic-{n}",
                          port=ports[n]).start()
    h = classic_haproxy(module_registry, cluster, ports)
    classic_scenario(cluster, h, module_password)
    h.stop()


# --------------------------------------------------------------------------
# Peers and replication
# --------------------------------------------------------------------------

def test_stopped_peer(cluster, agent):
    """node3 stopped: node3 is down (no connection); node1 and node2 keep
    serving and name the peer that is not replicating."""
    all_ready(agent)
    cluster["node3"].stop()
    try:
        agent.wait_state("node3", "down", 30)
        for n in ("node1", "node2"):
            st = wait_for(lambda: (lambda s: s if s["state"] == "degraded" else False)(
                agent.node(n)), 60, desc=f"{n} degraded")
            assert "node3" in st["reason"] and st["weight"] > 0, st
    finally:
        cluster["node3"].start()
    all_ready(agent, timeout=90)


NEXT_ID = [1]


def insert_rows(pg, rows, width):
    first = NEXT_ID[0]
    NEXT_ID[0] += rows
    pg.q("INSERT INTO load SELECT g, repeat('x', %s) FROM generate_series(%s, %s) g",
         (width, first, first + rows - 1))


def insert_load(pg, seconds, rows_per_stmt=2000):
    t_end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < t_end:
        insert_rows(pg, rows_per_stmt, 500)
        n += rows_per_stmt
    return n


def test_lag_under_load(cluster, agent):
    """Writes on node1 for a few seconds: every node keeps a known lag,
    and a node stops serving only for its lag (over max_lag, or rising
    back from it): how far a peer falls behind depends on how fast this
    machine applies. All are ready again once the load stops."""
    all_ready(agent)
    samples = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            for n in NODES:
                samples.append((n, agent.node(n)))
            time.sleep(0.2)
    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        rows = insert_load(cluster["node1"], 6)
    finally:
        stop.set()
        t.join(5)
    assert rows > 0 and samples
    for n, st in samples:
        assert isinstance(st["lag_bytes"], int), (n, st)
        if st["state"] not in SERVING:  # over max_lag, or rising back from it
            assert "lag" in st["reason"], (n, st)
    wait_for(lambda: cluster["node3"].scalar("SELECT count(*) FROM load", dbname=BDR_DB) ==
             cluster["node1"].scalar("SELECT count(*) FROM load", dbname=BDR_DB), 120,
             desc="node3 caught up")
    all_ready(agent)


def test_paused_apply_makes_that_node_stale(cluster, agent):
    """bdr.bdr_apply_pause() on node2, then 8 MB written on node1: node2's
    own data is behind (degraded or down by lag); node1, whose data is
    current, stays ready. Resumed, node2 catches up and is ready."""
    all_ready(agent)
    cluster["node2"].q("SELECT bdr.bdr_apply_pause()")
    try:
        assert cluster["node2"].scalar("SELECT bdr.bdr_apply_is_paused()", dbname=BDR_DB)
        before = cluster["node2"].scalar("SELECT count(*) FROM load", dbname=BDR_DB)
        insert_rows(cluster["node1"], 8000, 1000)
        st = wait_for(lambda: (lambda s: s if s["state"] in ("degraded", "down")
                               and (s["lag_bytes"] or 0) >= 4 * MB else False)(
            agent.node("node2")), 30, desc="node2 stale by lag")
        assert st["weight"] < 100, st
        assert cluster["node2"].scalar("SELECT count(*) FROM load", dbname=BDR_DB) == before
        n1 = agent.node("node1")
        assert n1["state"] == "ready", n1
    finally:
        cluster["node2"].q("SELECT bdr.bdr_apply_resume()")
    agent.wait_state("node2", "ready", 60)


def test_hidden_positions_are_unknown_lag(cluster, agent):
    """Without bdr.sql's function (EXECUTE revoked on node1), pgbdr_monitor
    reads bdr.bdr_node_slots, whose replay_location 9.4 hides from it: the
    lag node2 gets from node1's slot is unknown (NULL, a lag limit set:
    degraded at min_weight), never 0. Granted again, it is measured."""
    all_ready(agent)
    fn = "pgbdr_agent.bdr_slot_positions()"
    cluster["node1"].q(f"REVOKE EXECUTE ON FUNCTION {fn} FROM pgbdr_monitor")
    try:
        st = agent.wait_state("node2", "degraded", 30, reason_re=r"lag unknown")
        assert st["lag_bytes"] is None and st["weight"] == POLICY["min_weight"], st
    finally:
        cluster["node1"].q(f"GRANT EXECUTE ON FUNCTION {fn} TO pgbdr_monitor")
    st = agent.wait_state("node2", "ready", 30)
    assert isinstance(st["lag_bytes"], int), st


def test_part(cluster, agent):
    """node3 parted with bdr.bdr_part_by_node_names: it is down for good
    (parting cannot be undone), the other two are ready without it."""
    all_ready(agent)
    cluster["node1"].q("SELECT bdr.bdr_part_by_node_names(ARRAY['node3'])")
    n3 = agent.wait_state("node3", "down", 60)
    assert re.search(r"part|not active|not found", n3["reason"], re.I), n3
    all_ready(agent, ("node1", "node2"), timeout=90)
    rows = cluster["node1"].q("SELECT node_name, node_status FROM bdr.bdr_nodes ORDER BY 1")
    assert ("node3", "k") in rows, rows

