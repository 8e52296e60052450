"""EDB Postgres Distributed (BDR 3.7, PGD 4, PGD 5), against EMULATIONS of
their catalogs (fixtures/pgd37_emulation.sql, pgd4_emulation.sql,
pgd5_emulation.sql).

PGD cannot be installed here. Each emulation gives the agent one
version's catalog names and columns (they differ: node kinds, per-group
Raft and the routing view are PGD 5; the decoding worker's slot is 4+;
3.7 sits on pglogical 3) and lets the tests drive every join state, every
bdr.monitor_local_replslots() status, subscriptions, Raft and lag. One
agent watches the three databases as [node.pgd37], [node.pgd4] and
[node.pgd5], as pgbdr_monitor with only sql/grants/pgd.sql, over
127.0.0.1 with a password, and detects the flavor itself.

bdr.node_slots are outgoing: how far the peers are behind this node. The
agent reports them as outgoing_lag_bytes and never weighs this node by
them; this node's own lag is in its peers' slots for it, which a single
node's catalog does not hold, so here it is unknown.
"""

import os
import re
import time

import pytest

from harness import FAST_AGENT, FIXTURES_DIR, Agent, PgServer, node_section, wait_for

VERSIONS = ("pgd37", "pgd4", "pgd5")
LOCAL = "pgdnode1"
PEERS = ("pgdnode2", "pgdnode3")
GROUP = "pgdgroup"
MB = 1024 * 1024


def fixture_file(version):
    return os.path.join(FIXTURES_DIR, f"{version}_emulation.sql")


def setup_healthy(pg, db):
    pg.sql("SELECT bdr.emulation_setup(%s, %s, VARIADIC %s)", (LOCAL, GROUP, list(PEERS)),
           dbname=db)


@pytest.fixture(scope="module")
def pg(module_registry, module_password):
    pg = PgServer(module_registry, "pgd", pglogical=False).init().start()
    for db in VERSIONS + ("pgd5cat",):
        pg.create_database(db)
        pg.run_file(fixture_file("pgd5" if db == "pgd5cat" else db), dbname=db)
        setup_healthy(pg, db)
        pg.apply_grants("pgd", dbname=db, password=module_password)
    return pg


POLICY = {"read_only": "down", "raft_grace": "1s"}


@pytest.fixture(scope="module")
def agent(module_registry, pg, module_password):
    sections = [("agent", dict(FAST_AGENT)), ("policy", POLICY)]
    sections += [(f"node.{v}", node_section(pg, module_password, dbname=v, flavor=None))
                 for v in VERSIONS]
    return Agent(module_registry, sections, name="agent-pgd").start()


@pytest.fixture(params=VERSIONS)
def version(request, pg, agent):
    """Each case starts from, and ends in, a healthy cluster."""
    v = request.param
    setup_healthy(pg, v)
    agent.wait_state(v, "ready", 10)
    yield v
    setup_healthy(pg, v)
    agent.wait_state(v, "ready", 10)


def node_state(state, target=None):
    return ("UPDATE bdr.emulation_nodes SET peer_state_name = %s, peer_target_state_name = %s"
            " WHERE is_local", (state, target or "ACTIVE"))


def monitor(status, message):
    return ("UPDATE bdr.emulation_control SET monitor_status = %s, monitor_message = %s",
            (status, message))


def sub(origin, enabled=True, status="replicating"):
    return ("UPDATE bdr.emulation_subscriptions SET sub_enabled = %s, subscription_status = %s"
            " WHERE origin_name = %s", (enabled, status, origin))


def raft_leader_is(leader):
    """Make `leader` the Raft leader, followed by everyone."""
    return ("UPDATE bdr.emulation_raft SET state = CASE WHEN node_name = %s THEN 'RAFT_LEADER'"
            " ELSE 'RAFT_FOLLOWER' END, leader_id = (SELECT node_id FROM bdr.emulation_nodes"
            " WHERE node_name = %s)", (leader, leader))


def sub_name(db, origin):
    return f"bdr_{db}_{GROUP}_{origin}_{LOCAL}"


JOINING = ("JOIN_START", "JOINING", "CATCHUP", "PROMOTE", "PROMOTING")
PARTING = ("PART_START", "PARTING", "PART_CATCHUP")

# id, SQL (list of (sql, params)), state, reason regex ({db} is the database),
# versions it applies to (None: all)
CASES = [
    ("active", [], "ready", None, None),
    ("enum-prefix", [node_state("BDR_PEER_STATE_ACTIVE")], "ready", None, None),
    ("state-none", [node_state("NONE")], "down", r"not joined.*\bNONE\b", None),
    ("state-created", [node_state("CREATED")], "down", r"not joined.*\bCREATED\b", None),
] + [
    (f"state-{s.lower()}", [node_state(s)], "down", rf"joining: {s}\b", None) for s in JOINING
] + [
    ("standby-joining", [node_state("STANDBY", "ACTIVE")], "down", r"joining: STANDBY", None),
    ("logical-standby", [node_state("STANDBY", "STANDBY")], "down", r"read-only", None),
] + [
    (f"state-{s.lower()}", [node_state(s)], "down", rf"parting: {s}\b", None) for s in PARTING
] + [
    ("state-parted", [node_state("PARTED")], "down", r"parted.*PARTED", None),
    ("state-unheard-of", [node_state("SOMETHING_NEW")], "down", r"SOMETHING_NEW", None),
    ("no-local-node", [("UPDATE bdr.emulation_nodes SET is_local = false", None)], "down",
     r"no local PGD node", None),
    # bdr.monitor_local_replslots()
    ("monitor-ok", [monitor("OK", "All BDR replication slots are working correctly")], "ready",
     None, None),
    ("monitor-warning", [monitor("WARNING", "slot lag above warning level")], "degraded",
     r"replication slots WARNING: slot lag above", None),
    ("monitor-critical", [monitor("CRITICAL",
                                  "There is at least 1 BDR replication slot which is inactive")],
     "degraded", r"replication slots CRITICAL: There is at least 1", None),
    ("monitor-unknown", [monitor("UNKNOWN", "This node is not part of any BDR group")], "down",
     r"replication slots UNKNOWN: This node is not part", None),
    ("monitor-unheard-of", [monitor("PURPLE", "new status")], "down", r"PURPLE", None),
    # bdr.node_slots
    ("slot-inactive", [("UPDATE bdr.emulation_slots SET active = false WHERE target_name = %s",
                        (PEERS[1],))], "degraded", rf"1 of 2 peers not streaming: {PEERS[1]}", None),
    ("decoder-slot-idle", [("UPDATE bdr.emulation_slots SET active = false"
                            " WHERE is_decoder_slot", None)], "ready", None, ("pgd4", "pgd5")),
    # bdr.subscription_summary
    ("sub-disabled", [sub(PEERS[0], enabled=False)], "down",
     r"subscription disabled: bdr_{db}_\w+_" + PEERS[0], None),
    ("sub-down-one", [sub(PEERS[0], status="down")], "degraded",
     rf"subscription bdr_{{db}}_\w+ from {PEERS[0]} is down", None),
    ("sub-down-all", [sub(p, status="down") for p in PEERS], "down",
     rf"no subscription replicating: .*{PEERS[0]} is down.*{PEERS[1]} is down", None),
    ("sub-status-null", [sub(PEERS[1], status=None)], "degraded", rf"{PEERS[1]} is unknown",
     None),
    # bdr.group_raft_details
    ("raft-peer-leads", [raft_leader_is(PEERS[0])], "ready", None, None),
    ("raft-no-leader", [("UPDATE bdr.emulation_raft SET state = 'RAFT_CANDIDATE'"
                         " WHERE state = 'RAFT_LEADER'", None)], "down", r"raft has no leader",
     None),
    ("raft-two-leaders", [("UPDATE bdr.emulation_raft SET state = 'RAFT_LEADER'"
                           " WHERE node_name = %s", (PEERS[1],))], "down",
     rf"raft has 2 leaders: {LOCAL}, {PEERS[1]}", None),
    ("raft-self-astray", [raft_leader_is(PEERS[0]),
                          ("UPDATE bdr.emulation_raft SET leader_id = 1000003"
                           " WHERE node_name = %s", (LOCAL,))], "down",
     rf"raft: this node does not follow leader {PEERS[0]}", None),
    ("raft-peer-astray", [("UPDATE bdr.emulation_raft SET leader_id = 1000003"
                           " WHERE node_name = %s", (PEERS[0],))], "degraded",
     rf"raft: {PEERS[0]} not following the leader", None),
    ("raft-peer-unreachable", [("UPDATE bdr.emulation_raft SET state = NULL, leader_id = NULL"
                                " WHERE node_name = %s", (PEERS[1],))], "ready", None, None),
    ("raft-no-status", [("DELETE FROM bdr.emulation_raft", None)], "down",
     r"raft: no consensus status", None),
    # PGD 5 only: per-group Raft and node kinds
    ("raft-subgroup-no-leader",
     [("INSERT INTO bdr.emulation_raft SELECT node_id, node_name, 'dc1', 'RAFT_FOLLOWER', 0"
       " FROM bdr.emulation_nodes", None)], "down", r"raft has no leader in group dc1", ("pgd5",)),
    ("raft-foreign-group-ignored",
     [("INSERT INTO bdr.emulation_raft VALUES (1000009, 'elsewhere', 'dc2', 'RAFT_FOLLOWER', 0)",
       None)], "ready", None, ("pgd5",)),
    ("witness", [("UPDATE bdr.emulation_nodes SET node_kind_name = 'witness' WHERE is_local",
                  None)], "down", r"witness node", ("pgd5",)),
    ("subscriber-only", [("UPDATE bdr.emulation_nodes SET node_kind_name = 'subscriber-only'"
                          " WHERE is_local", None)], "down", r"read-only", ("pgd5",)),
    # 3.7 and 4: no node kinds; the group's node_group_type says subscriber-only
    ("subscriber-only-group", [("INSERT INTO bdr.emulation_group_types"
                                " VALUES (%s, 'subscriber-only')", (GROUP,))],
     "down", r"read-only", ("pgd37", "pgd4")),
    ("data-group", [("INSERT INTO bdr.emulation_group_types VALUES (%s, 'data')", (GROUP,))],
     "ready", None, ("pgd37", "pgd4")),
]


@pytest.mark.parametrize("case_id,steps,state,reason_re,only", CASES,
                         ids=[c[0] for c in CASES])
def test_catalog_state(pg, agent, version, case_id, steps, state, reason_re, only):
    if only and version not in only:
        pytest.skip(f"{case_id} concerns {', '.join(only)} only")
    for sql, params in steps:
        pg.sql(sql, params, dbname=version)
    reason_re = reason_re.replace("{db}", version) if reason_re else None
    n = agent.wait_state(version, state, 5, reason_re=reason_re)
    assert n["flavor"] == "pgd", n
    if state == "ready":
        assert n["weight"] == 100 and not n["reason"], n
    elif state == "down":
        assert n["weight"] == 0 and n["reason"], n
    else:
        assert 0 < n["weight"] <= 100 and n["reason"], n
    r = agent.get(f"/node/{version}")
    assert r.status == (503 if state == "down" else 200), r
    if reason_re:
        assert re.search(reason_re, r.text, re.I), r


def set_lag(pg, db, peer, nbytes, seconds):
    pg.sql("UPDATE bdr.emulation_slots SET replay_lag_bytes = %s,"
           " replay_lag = make_interval(secs => %s) WHERE target_name = %s",
           (nbytes, seconds, peer), dbname=db)


def outgoing(agent, version, at_least):
    def seen():
        n = agent.node(version)
        v = n.get("outgoing_lag_bytes")
        return n if isinstance(v, int) and v >= at_least else False
    return wait_for(seen, 5, desc=f"{version} outgoing lag >= {at_least}")


def test_caught_up_outgoing_lag_is_zero_own_lag_unknown(agent, version):
    """An idle, caught-up slot: the peers are 0 bytes behind. This node's
    own lag cannot be read from its own catalog: unknown, not 0."""
    n = outgoing(agent, version, 0)
    assert n["outgoing_lag_bytes"] == 0, n
    assert n["lag_bytes"] is None and n["lag_seconds"] is None, n


def test_peer_behind_is_not_this_nodes_lag(pg, agent, version):
    set_lag(pg, version, PEERS[0], 8 * MB, 3)
    n = outgoing(agent, version, 8 * MB)
    assert n["outgoing_lag_bytes"] == 8 * MB, n
    assert n["state"] == "ready" and n["weight"] == 100 and n["lag_bytes"] is None, n


def test_peer_far_behind_is_not_this_nodes_lag(pg, agent, version):
    set_lag(pg, version, PEERS[1], 32 * MB, 45)
    n = outgoing(agent, version, 32 * MB)
    assert n["state"] == "ready" and n["weight"] == 100, n


def test_inactive_slot_degrades_by_name(pg, agent, version):
    """An idle peer slot degrades by name; its lag is still the peer's."""
    set_lag(pg, version, PEERS[0], 64 * MB, 100)
    pg.sql("UPDATE bdr.emulation_slots SET active = false WHERE target_name = %s", (PEERS[0],),
           dbname=version)
    n = agent.wait_state(version, "degraded", 5, reason_re=PEERS[0])
    assert n["outgoing_lag_bytes"] == 64 * MB and n["lag_bytes"] is None, n


def test_impairments_add_up(pg, agent, version):
    pg.sql("UPDATE bdr.emulation_slots SET active = false WHERE target_name = %s", (PEERS[1],),
           dbname=version)
    pg.sql(*monitor("CRITICAL", "There is at least 1 BDR replication slot which is inactive"),
           dbname=version)
    n = agent.wait_state(version, "degraded", 5, reason_re=r"CRITICAL.*;.*" + PEERS[1])
    assert n["weight"] > 0, n



def test_subscriber_only_is_never_writable_nor_elected(module_registry, pg, module_password):
    """BDR 3.7 / PGD 4: with read_only = ready, a node in a subscriber-only
    group still serves reads, but it is read-only: /write never says 200
    for it and the election passes it over, even at the best priority.
    Both subscriber-only: no write leader at all."""
    dbs = ("pgd37", "pgd4")
    sections = [("agent", dict(FAST_AGENT, leader_return_delay="0s", leader_handover="0s")),
                ("policy", {"read_only": "ready", "raft_grace": "1s"})]
    sections += [(f"node.{db}", node_section(pg, module_password, dbname=db, flavor=None,
                                             priority=10 * (i + 1)))
                 for i, db in enumerate(dbs)]
    a = Agent(module_registry, sections, name="agent-pgd-so").start()
    try:
        for db in dbs:
            setup_healthy(pg, db)
            a.wait_state(db, "ready", 10)
        wait_for(lambda: a.status_json()["write_node"] == "pgd37", 10, desc="pgd37 leads")
        pg.sql("INSERT INTO bdr.emulation_group_types VALUES (%s, 'subscriber-only')", (GROUP,),
               dbname="pgd37")
        wait_for(lambda: a.status_json()["write_node"] == "pgd4", 10,
                 desc="pgd4 leads once pgd37 is subscriber-only")
        for _ in range(10):
            st = a.status_json()
            so = next(n for n in st["nodes"] if n["name"] == "pgd37")
            assert so["state"] == "ready" and so["read_only"] and not so["write_leader"], so
            assert st["write_node"] == "pgd4", st
            assert a.get("/node/pgd37").status == 200
            time.sleep(0.2)
        pg.sql("INSERT INTO bdr.emulation_group_types VALUES (%s, 'subscriber-only')", (GROUP,),
               dbname="pgd4")
        wait_for(lambda: a.status_json()["write_node"] is None, 10, desc="no write leader")
        assert not any(n["write_leader"] for n in a.status_json()["nodes"])
    finally:
        a.stop()
        for db in dbs:
            setup_healthy(pg, db)

# --------------------------------------------------------------------------
# The cluster view from the catalog: the classic [postgresql] section on a
# PGD 5 node, whose routing catalog names the write leader.
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def catalog_agent(module_registry, pg, module_password):
    return Agent(module_registry, [
        ("postgresql", [("host", "127.0.0.1"), ("port", pg.port), ("database", "pgd5cat"),
                        ("user", "pgbdr_monitor"), ("password", module_password)]),
        ("agent", dict(FAST_AGENT)),
    ], name="agent-pgd-catalog").start()


@pytest.fixture
def catalog_healthy(pg, catalog_agent):
    setup_healthy(pg, "pgd5cat")
    catalog_agent.wait_state(LOCAL, "ready", 10)
    yield
    setup_healthy(pg, "pgd5cat")


def test_name_and_peers_come_from_the_catalog(pg, catalog_agent, catalog_healthy):
    st = catalog_agent.status_json()
    assert st["default_node"] == LOCAL
    assert st["peers"] == [{"name": p, "up": True} for p in PEERS], st
    pg.sql("UPDATE bdr.emulation_nodes SET peer_state_name = 'PARTED' WHERE node_name = %s",
           (PEERS[1],), dbname="pgd5cat")
    pg.sql("UPDATE bdr.emulation_slots SET active = false WHERE target_name = %s", (PEERS[0],),
           dbname="pgd5cat")

    def peers_down():
        st = catalog_agent.status_json()
        return st if st["peers"] == [{"name": p, "up": False} for p in PEERS] else False
    wait_for(peers_down, 5, desc="both peers down in the catalog view")


def test_witness_is_no_write_candidate(pg, catalog_agent, catalog_healthy):
    pg.sql("UPDATE bdr.emulation_nodes SET node_kind_name = 'witness' WHERE node_name = %s",
           (PEERS[0],), dbname="pgd5cat")

    def witness_down():
        peers = {p["name"]: p["up"] for p in catalog_agent.status_json()["peers"]}
        return peers == {PEERS[0]: False, PEERS[1]: True}
    wait_for(witness_down, 5, desc="witness not up as a write candidate")


def test_write_node_follows_pgd_routing(pg, catalog_agent, catalog_healthy):
    """PGD 5's bdr.node_group_routing_summary.write_lead names the write
    leader; the cluster view should follow it rather than elect its own."""
    pg.sql("UPDATE bdr.emulation_routing SET write_lead = %s", (PEERS[1],), dbname="pgd5cat")
    wait_for(lambda: catalog_agent.status_json()["write_node"] == PEERS[1], 5,
             desc=f"write_node = {PEERS[1]}")


def test_raft_leaderless_within_then_past_raft_grace(pg, catalog_agent, catalog_healthy):
    """Raft without a leader (an election): for raft_grace (6s by
    default) the node serves on, degraded, and the last known write leader
    stays although the routing catalog names none; then it fails closed."""
    # the leader the routing catalog names, once the agent follows it (the
    # previous test may have moved it: a handover has a gap)
    lead = pg.scalar("SELECT write_lead FROM bdr.emulation_routing LIMIT 1", dbname="pgd5cat")
    before = wait_for(lambda: (lambda w: w if w and w == (lead or w) else None)(
        catalog_agent.status_json()["write_node"]), 10, desc="the write node settled")
    pg.sql("UPDATE bdr.emulation_raft SET state = 'RAFT_CANDIDATE' WHERE state = 'RAFT_LEADER'",
           dbname="pgd5cat")
    pg.sql("UPDATE bdr.emulation_routing SET write_lead = NULL", dbname="pgd5cat")
    n = catalog_agent.wait_state(LOCAL, "degraded", 3, reason_re=r"within raft_grace")
    assert n["weight"] > 0, n
    assert catalog_agent.status_json()["write_node"] == before
    n = catalog_agent.wait_state(LOCAL, "down", 10, reason_re=r"raft has no leader.* for .*"
                                 r"\(raft_grace 6\.0s\)")
    assert n["weight"] == 0, n
    assert catalog_agent.get("/").status == 503


def test_missing_group_raft_details_fails_closed(pg, agent):
    setup_healthy(pg, "pgd4")
    agent.wait_state("pgd4", "ready", 10)
    pg.sql("ALTER VIEW bdr.group_raft_details RENAME TO emulation_hidden_raft", dbname="pgd4")
    try:
        agent.wait_state("pgd4", "down", 10, reason_re=r"group_raft_details is missing")
    finally:
        pg.sql("ALTER VIEW bdr.emulation_hidden_raft RENAME TO group_raft_details", dbname="pgd4")
    agent.wait_state("pgd4", "ready", 10)


def test_detects_pgd_over_pglogical(pg, agent):
    """BDR 3.7 runs on pglogical 3; its schema must not make it pglogical."""
    assert pg.scalar("SELECT count(*) FROM pg_namespace WHERE nspname = 'pglogical'",
                     dbname="pgd37") == 1
    assert agent.node("pgd37")["flavor"] == "pgd"


def test_monitor_role_is_least_privilege(pg):
    assert pg.scalar("SELECT rolsuper OR rolreplication FROM pg_roles "
                     "WHERE rolname = 'pgbdr_monitor'") is False
    for db in VERSIONS:
        assert pg.scalar("SELECT has_table_privilege('pgbdr_monitor', 'bdr.emulation_nodes',"
                         " 'SELECT')", dbname=db) is False
        assert pg.scalar("SELECT has_table_privilege('pgbdr_monitor', 'bdr.node_slots',"
                         " 'UPDATE')", dbname=db) is False
