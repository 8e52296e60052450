"""A node's lag is its own staleness: the changes made elsewhere that it
has not applied yet. The node that falls behind loses weight; the node
it falls behind stays at 100%.

- Real pglogical, provider -> subscriber, one central agent watching
  both: the subscriber's apply worker is stopped (SIGSTOP) during a bulk
  load on the provider.
- The BDR 1/2 catalog EMULATION (fixtures/bdr1_emulation.sql, not BDR),
  central mode: two emulated nodes in two databases, one agent watching
  both; a peer's slot for node2 falling behind is node2's lag.
- Per-node mode (one classic agent on one emulated BDR node): its own
  outgoing slots are the peers' staleness, reported apart, never its
  weight; its own lag is read from the peer its catalog names, and when
  that peer cannot be reached it is unknown, which with max_lag set
  never passes for caught up. An isolated node takes no writes.
- The same per-node reading against the PGD catalog EMULATIONS
  (fixtures/pgd37_emulation.sql, pgd4_emulation.sql, pgd5_emulation.sql,
  not PGD): two emulated nodes per version, one database each, that
  name each other in bdr.node_summary.interface_connstr; the peer's
  bdr.node_slots row for this node is this node's lag.
"""

import os
import signal

import pytest

from harness import (FAST_AGENT, FIXTURES_DIR, Agent, PgServer, free_port, node_section,
                     signal_quiet, wait_for)

MB = 1024 * 1024
POLICY = {"drain_lag": "1MB", "max_lag": "4GB", "min_weight": 10}
REPL_SECRET = "pgl-replication-secret"


# ---- real pglogical ---------------------------------------------------------

def pgl_setup(pg, node_name):
    pg.create_database("app")
    pg.sql("CREATE EXTENSION pglogical", dbname="app")
    pg.sql("CREATE TABLE t (id bigint PRIMARY KEY, pad text)", dbname="app")
    pg.sql("SELECT pglogical.create_node(node_name := %s, dsn := %s)",
           (node_name, pg.dsn_socket("app")), dbname="app")


@pytest.fixture(scope="module")
def pgl(module_registry, module_password):
    prov = PgServer(module_registry, "lag-prov").init().start()
    sub = PgServer(module_registry, "lag-sub").init().start()
    pgl_setup(prov, "provider")
    pgl_setup(sub, "subscriber")
    prov.sql("SELECT pglogical.replication_set_add_table('default', 't')", dbname="app")
    # The subscription reaches its provider over TCP as a replication
    # role with a password: a per-node agent takes the address from it.
    prov.sql("CREATE ROLE pgl_repl LOGIN SUPERUSER REPLICATION PASSWORD %s", (REPL_SECRET,))
    sub.sql("SELECT pglogical.create_subscription(subscription_name := 'sub1',"
            " provider_dsn := %s, synchronize_structure := false, synchronize_data := false)",
            (prov.tcp_dsn("app", user="pgl_repl", password=REPL_SECRET),), dbname="app")
    wait_for(lambda: sub.scalar("SELECT status FROM pglogical.show_subscription_status('sub1')",
                                dbname="app") == "replicating", 60, desc="sub1 replicating")
    for pg in (prov, sub):
        pg.apply_grants("pglogical", dbname="app", password=module_password)
    agent = Agent(module_registry, [
        ("agent", dict(FAST_AGENT)),
        ("policy", POLICY),
        ("node.provider", node_section(prov, module_password, flavor=None)),
        ("node.subscriber", node_section(sub, module_password, flavor=None)),
    ], name="agent-lag-pgl").start()
    return prov, sub, agent


def apply_worker_pid(sub):
    return sub.scalar("SELECT pid FROM pg_stat_activity WHERE backend_type LIKE 'pglogical apply%'")


def test_pglogical_stopped_subscriber_loses_weight_provider_keeps_it(pgl):
    prov, sub, agent = pgl
    agent.wait_state("provider", "ready", 15)
    agent.wait_state("subscriber", "ready", 15)
    assert agent.node("provider")["lag_bytes"] == 0
    pid = wait_for(lambda: apply_worker_pid(sub), 30, desc="apply worker")
    os.kill(pid, signal.SIGSTOP)
    try:
        prov.sql("INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 100000) g",
                 dbname="app")

        def subscriber_behind():
            n = agent.node("subscriber")
            return n if isinstance(n["lag_bytes"], int) and n["lag_bytes"] > 4 * MB else False
        n = wait_for(subscriber_behind, 30, desc="subscriber lag seen")
        n = agent.wait_state("subscriber", "degraded", 10)
        assert n["weight"] < 100, n
        assert "lag" in n["reason"], n
        p = agent.node("provider")
        assert p["state"] == "ready" and p["weight"] == 100 and p["lag_bytes"] == 0, p
        assert agent.get("/node/provider").status == 200
    finally:
        signal_quiet(pid, signal.SIGCONT)
    wait_for(lambda: sub.scalar("SELECT count(*) FROM t", dbname="app") == 100000, 120,
             desc="subscriber caught up")
    n = agent.wait_state("subscriber", "ready", 30)
    assert n["weight"] == 100, n
    assert agent.node("provider")["weight"] == 100


def test_pglogical_per_node_subscriber_reads_its_lag_from_the_provider(module_registry, pgl,
                                                                        module_password):
    """One agent per node, each watching its own node alone. The
    subscriber's agent finds the provider through the interface its
    subscription uses, and reads there how far the provider has sent to
    it: with the apply worker stopped during a bulk load, the subscriber
    loses weight; the provider's own agent keeps it at 100%."""
    prov, sub, _ = pgl
    agents = {name: Agent(module_registry, [
        ("agent", dict(FAST_AGENT)),
        ("policy", POLICY),
        (f"node.{name}", node_section(pg, module_password, flavor=None)),
    ], name=f"agent-lag-pgl-{name}").start() for name, pg in (("provider", prov), ("subscriber", sub))}
    a_prov, a_sub = agents["provider"], agents["subscriber"]
    pid = None
    try:
        a_prov.wait_state("provider", "ready", 15)
        n = wait_for(lambda: (lambda x: x if x["state"] == "ready"
                              and isinstance(x["lag_bytes"], int) else False)(
                                  a_sub.node("subscriber")), 15, desc="subscriber lag read")
        assert n["weight"] == 100, n
        pid = wait_for(lambda: apply_worker_pid(sub), 30, desc="apply worker")
        os.kill(pid, signal.SIGSTOP)
        prov.sql("INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(200001, 300000) g",
                 dbname="app")

        def subscriber_behind():
            x = a_sub.node("subscriber")
            return x if isinstance(x["lag_bytes"], int) and x["lag_bytes"] > 4 * MB else False
        wait_for(subscriber_behind, 30, desc="subscriber's own lag seen by its agent")
        n = a_sub.wait_state("subscriber", "degraded", 10)
        assert n["weight"] < 100 and "lag" in n["reason"], n
        p = a_prov.node("provider")
        assert p["state"] == "ready" and p["weight"] == 100 and p["lag_bytes"] == 0, p
        os.kill(pid, signal.SIGCONT)
        pid = None
        n = a_sub.wait_state("subscriber", "ready", 60)
        assert n["weight"] == 100, n
        for a in (a_prov, a_sub):
            assert REPL_SECRET not in a.log() and "pgl_repl" not in a.log()
    finally:
        if pid:
            signal_quiet(pid, signal.SIGCONT)
        for a in agents.values():
            a.stop()


# ---- BDR 1/2 catalog EMULATION, central mode --------------------------------

@pytest.fixture(scope="module")
def bdr(module_registry, module_password):
    pg = PgServer(module_registry, "lag-bdr", pglogical=False).init().start()
    for me, peer in (("node1", "node2"), ("node2", "node1")):
        pg.create_database(me)
        pg.run_file(os.path.join(FIXTURES_DIR, "bdr1_emulation.sql"), dbname=me)
        pg.sql("SELECT bdr.emulation_setup(%s, %s)", (me, peer), dbname=me)
        pg.apply_grants("bdr", dbname=me, password=module_password)
    while pg.scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')") <= 64 * MB:
        pg.sql("CREATE TABLE IF NOT EXISTS walfill (x int); INSERT INTO walfill VALUES (1);"
               " SELECT pg_switch_wal()")
    for me, peer in (("node1", "node2"), ("node2", "node1")):
        pg.sql("SELECT bdr.emulation_setup(%s, %s)", (me, peer), dbname=me)
    return pg


def test_bdr_central_peer_slot_is_the_receivers_lag(module_registry, bdr, module_password):
    agent = Agent(module_registry, [
        ("agent", dict(FAST_AGENT)),
        ("policy", POLICY),
        ("node.node1", node_section(bdr, module_password, dbname="node1", flavor="bdr")),
        ("node.node2", node_section(bdr, module_password, dbname="node2", flavor="bdr")),
    ], name="agent-lag-bdr").start()
    for name in ("node1", "node2"):
        n = agent.wait_state(name, "ready", 10)
        assert n["weight"] == 100 and isinstance(n["lag_bytes"], int), n
    # node1 has sent node2 nothing for 32MB: node2 is 32MB stale.
    bdr.sql("UPDATE bdr.bdr_node_slots SET replay_location = pg_current_wal_lsn() - %s::numeric"
            " WHERE node_name = 'node2'", (32 * MB,), dbname="node1")
    n2 = agent.wait_state("node2", "degraded", 10)
    assert 32 * MB <= n2["lag_bytes"] < 33 * MB and n2["weight"] < 100, n2
    n1 = agent.node("node1")
    assert n1["state"] == "ready" and n1["weight"] == 100 and n1["lag_bytes"] < MB, n1
    bdr.sql("SELECT bdr.emulation_setup('node1', 'node2')", dbname="node1")
    n2 = agent.wait_state("node2", "ready", 10)
    assert n2["weight"] == 100
    agent.stop()


def per_node_agent(registry, pg, password, name, **agent_keys):
    """One classic agent on one emulated BDR node, alone."""
    return Agent(registry, [
        ("postgresql", [("host", "127.0.0.1"), ("port", pg.port), ("database", name),
                        ("user", "pgbdr_monitor"), ("password", password)]),
        ("agent", dict(FAST_AGENT, **agent_keys)),
        ("policy", POLICY),
    ], name=f"agent-lag-{name}").start()


def slot_behind(pg, db, receiver, nbytes):
    pg.sql("UPDATE bdr.bdr_node_slots SET replay_location = pg_current_wal_lsn() - %s::numeric"
           " WHERE node_name = %s", (nbytes, receiver), dbname=db)


def test_bdr_per_node_lag_is_read_from_the_peers_slot(module_registry, bdr, module_password):
    """One classic agent on node1 alone. Its own slot for node2 falling
    behind is node2's staleness: reported apart, never node1's weight.
    node1's own lag is what node2's slot for node1 says: the agent finds
    node2 through the DSN in node1's catalog (bdr.bdr_connections) and
    asks it, as the monitoring role, never as the replication role the
    DSN names."""
    agent = per_node_agent(module_registry, bdr, module_password, "node1")
    try:
        n = agent.wait_for(lambda: (lambda x: x if x["state"] == "ready"
                                    and isinstance(x["lag_bytes"], int) else False)(
                                        agent.node("node1")), 10, desc="node1 lag read from node2")
        assert n["weight"] == 100 and n["lag_bytes"] < MB, n

        # node1's slot for node2: node2's staleness, not node1's.
        slot_behind(bdr, "node1", "node2", 32 * MB)
        wait_for(lambda: (agent.node("node1").get("outgoing_lag_bytes") or 0) >= 32 * MB, 10,
                 desc="outgoing lag reported")
        n = agent.node("node1")
        assert n["state"] == "ready" and n["weight"] == 100 and n["lag_bytes"] < MB, n
        bdr.sql("SELECT bdr.emulation_setup('node1', 'node2')", dbname="node1")

        # node2 has sent node1 nothing for 32MB: node1 is 32MB stale.
        slot_behind(bdr, "node2", "node1", 32 * MB)
        n = agent.wait_state("node1", "degraded", 10)
        assert 32 * MB <= n["lag_bytes"] < 33 * MB and n["weight"] < 100, n
        assert "replication lag 32" in n["reason"], n

        # node2 catches up: node1 back at 100%.
        bdr.sql("SELECT bdr.emulation_setup('node2', 'node1')", dbname="node2")
        n = agent.wait_state("node1", "ready", 10)
        assert n["weight"] == 100 and n["lag_bytes"] < MB, n
        log = agent.log()
        assert "reading its lag from peer node2" in log
        assert "emulated-replication-secret" not in log
        assert "bdr_replication" not in log
    finally:
        agent.stop()


def test_bdr_per_node_unreachable_peer_leaves_the_lag_unknown(module_registry, bdr,
                                                              module_password):
    """The peer the catalog names cannot be reached: node1's lag is
    unknown (never 0), the reason names the peer, and with max_lag set
    node1 serves at min_weight only. peer_lag = off leaves it unknown too."""
    closed = free_port()
    bdr.sql("UPDATE bdr.bdr_connections SET conn_dsn = format('host=127.0.0.1 port=%%s"
            " dbname=node2 password=emulated-replication-secret', %s::int)", (closed,),
            dbname="node1")
    agent = per_node_agent(module_registry, bdr, module_password, "node1")
    try:
        n = agent.wait_state("node1", "degraded", 10, reason_re=r"lag unknown.*peer node2")
        assert n["lag_bytes"] is None and n["weight"] == 10, n
        assert "emulated-replication-secret" not in n["reason"]
        assert agent.get("/node/node1").status == 200
    finally:
        agent.stop()
        bdr.sql("SELECT bdr.emulation_setup('node1', 'node2')", dbname="node1")

    off = per_node_agent(module_registry, bdr, module_password, "node1", peer_lag="off")
    try:
        n = off.wait_state("node1", "degraded", 10, reason_re=r"lag unknown")
        assert n["lag_bytes"] is None and n["weight"] == 10, n
        assert "peer" not in n["reason"], n
    finally:
        off.stop()


def test_bdr_per_node_isolated_node_takes_no_writes(module_registry, bdr, module_password):
    """Per-node mode: node1's catalog shows it replicating with no peer
    (node2's walsender gone). Alone, the agent cannot tell the survivor
    from the node cut off: node1 serves at min_weight, and is never the
    write leader, the reason saying why."""
    agent = per_node_agent(module_registry, bdr, module_password, "node1",
                           leader_return_delay="0ms", leader_handover="0ms")
    try:
        wait_for(lambda: agent.get("/write").status == 200, 10, desc="node1 leads")
        bdr.sql("UPDATE bdr.bdr_node_slots SET walsender_active = false", dbname="node1")
        n = agent.wait_state("node1", "degraded", 10, reason_re=r"isolated")
        assert n["weight"] == 10, n
        r = wait_for(lambda: (lambda r: r if r.status == 503 else False)(agent.get("/write")),
                     10, desc="/write refused")
        assert "isolated" in r.text, r
        assert agent.status_json()["write_node"] in (None, ""), agent.status_json()
        assert agent.get("/node/node1").status == 200
        bdr.sql("SELECT bdr.emulation_setup('node1', 'node2')", dbname="node1")
        wait_for(lambda: agent.get("/write").status == 200, 10, desc="node1 leads again")
    finally:
        agent.stop()
        bdr.sql("SELECT bdr.emulation_setup('node1', 'node2')", dbname="node1")


# ---- PGD catalog EMULATIONS (3.7, 4, 5), per-node mode ----------------------

PGD_VERSIONS = ("pgd37", "pgd4", "pgd5")


def pgd_pair(version):
    """Two emulated PGD nodes, each in the database named after it."""
    return f"{version}a", f"{version}b"


def pgd_setup(pg, me, peer):
    pg.sql("SELECT bdr.emulation_setup(%s, 'pgdgroup', %s)", (me, peer), dbname=me)


@pytest.fixture(scope="module")
def pgd(module_registry, module_password):
    pg = PgServer(module_registry, "lag-pgd", pglogical=False).init().start()
    for version in PGD_VERSIONS:
        a, b = pgd_pair(version)
        for me, peer in ((a, b), (b, a)):
            pg.create_database(me)
            pg.run_file(os.path.join(FIXTURES_DIR, f"{version}_emulation.sql"), dbname=me)
            pgd_setup(pg, me, peer)
            pg.apply_grants("pgd", dbname=me, password=module_password)
    return pg


def pgd_slot_behind(pg, db, target, nbytes):
    pg.sql("UPDATE bdr.emulation_slots SET replay_lag_bytes = %s WHERE target_name = %s",
           (nbytes, target), dbname=db)


@pytest.mark.parametrize("version", PGD_VERSIONS)
def test_pgd_per_node_lag_is_read_from_the_peers_node_slots(module_registry, pgd,
                                                            module_password, version):
    """One agent on one emulated PGD node alone. Its own bdr.node_slots
    row for the peer is the peer's staleness, never this node's weight.
    Its own lag is the peer's row for it: the agent finds the peer through
    bdr.node_summary.interface_connstr and asks it as the monitoring role,
    never as the replication role the DSN names."""
    me, peer = pgd_pair(version)
    agent = per_node_agent(module_registry, pgd, module_password, me)
    try:
        n = agent.wait_for(lambda: (lambda x: x if x["state"] == "ready"
                                    and isinstance(x["lag_bytes"], int) else False)(
                                        agent.node(me)), 10, desc=f"{me} lag read from {peer}")
        assert n["weight"] == 100 and n["lag_bytes"] < MB, n

        # this node's slot for the peer: the peer's staleness, not ours
        pgd_slot_behind(pgd, me, peer, 32 * MB)
        wait_for(lambda: (agent.node(me).get("outgoing_lag_bytes") or 0) >= 32 * MB, 10,
                 desc="outgoing lag reported")
        n = agent.node(me)
        assert n["state"] == "ready" and n["weight"] == 100 and n["lag_bytes"] < MB, n
        pgd_setup(pgd, me, peer)

        # the peer has sent this node nothing for 32MB: this node is 32MB stale
        pgd_slot_behind(pgd, peer, me, 32 * MB)
        n = agent.wait_state(me, "degraded", 10)
        assert 32 * MB <= n["lag_bytes"] < 33 * MB and n["weight"] < 100, n
        assert "replication lag 32" in n["reason"], n

        # the peer catches up: back at 100%
        pgd_setup(pgd, peer, me)
        n = agent.wait_state(me, "ready", 10)
        assert n["weight"] == 100 and n["lag_bytes"] < MB, n
        log = agent.log()
        assert f"reading its lag from peer {peer}" in log
        assert "emulated-replication-secret" not in log
        assert "bdr_replication" not in log
    finally:
        agent.stop()
        pgd_setup(pgd, me, peer)
        pgd_setup(pgd, peer, me)


@pytest.mark.parametrize("version", PGD_VERSIONS)
def test_pgd_per_node_unreachable_peer_leaves_the_lag_unknown(module_registry, pgd,
                                                              module_password, version):
    """The peer's interface cannot be reached: this node's lag is unknown
    (never 0), the reason names the peer, and with max_lag set the node
    serves at min_weight only."""
    me, peer = pgd_pair(version)
    closed = free_port()
    pgd.sql("UPDATE bdr.emulation_nodes SET interface_connstr = format('host=127.0.0.1"
            " port=%%s dbname=%%s password=emulated-replication-secret', %s::int, node_name)"
            " WHERE NOT is_local", (closed,), dbname=me)
    agent = per_node_agent(module_registry, pgd, module_password, me)
    try:
        n = agent.wait_state(me, "degraded", 10, reason_re=rf"lag unknown.*peer {peer}\b")
        assert n["lag_bytes"] is None and n["weight"] == 10, n
        assert "emulated-replication-secret" not in n["reason"]
    finally:
        agent.stop()
        pgd_setup(pgd, me, peer)
