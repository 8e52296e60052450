"""BDR 1/2, against an EMULATION of the BDR catalog (fixtures/bdr1_emulation.sql).

BDR cannot be installed on PostgreSQL 15; the emulation gives the agent
BDR 1.0's catalog names and columns, and lets the tests drive every
node_status code, bdr_is_active_in_db(), node_read_only and the peers'
slots. The agent connects as pgbdr_monitor with only sql/grants/bdr.sql
and is configured with the classic [postgresql] section, so the node's
name comes from the catalog.

This node's slots are outgoing: how far its peers are behind it. Alone,
the agent reports them as outgoing_lag_bytes and never weighs the node
by them; the node's own lag lives in its peers' slots for it
(test_lag_direction.py reads them in central mode).
"""

import os
import re

import pytest

from harness import FAST_AGENT, FIXTURES_DIR, Agent, PgServer, wait_for

LOCAL = "bdrnode1"
PEERS = ("bdrnode2", "bdrnode3")
MB = 1024 * 1024
MAX_LAG = 16 * MB


@pytest.fixture(scope="module")
def pg(module_registry, module_password):
    pg = PgServer(module_registry, "bdr", pglogical=False).init().start()
    pg.create_database("suppliers")
    pg.run_file(os.path.join(FIXTURES_DIR, "bdr1_emulation.sql"), dbname="suppliers")
    pg.sql("SELECT bdr.emulation_setup(%s, VARIADIC %s)", (LOCAL, list(PEERS)), dbname="suppliers")
    pg.apply_grants("bdr", dbname="suppliers", password=module_password)
    # Enough WAL that "replay_location = 0/0" is a lag beyond MAX_LAG.
    while pg.scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')") <= 2 * MAX_LAG:
        pg.sql("CREATE TABLE IF NOT EXISTS walfill (x int); INSERT INTO walfill VALUES (1);"
               " SELECT pg_switch_wal()")
    return pg


@pytest.fixture(scope="module")
def agent(module_registry, pg, module_password):
    # The classic [postgresql] section: the name comes from the catalog.
    return Agent(module_registry, [
        ("postgresql", [("host", "127.0.0.1"), ("port", pg.port), ("database", "suppliers"),
                        ("user", "pgbdr_monitor"), ("password", module_password)]),
        ("agent", dict(FAST_AGENT)),
        ("policy", {"read_only": "down"}),
    ], name="agent-bdr").start()


def q(pg, sql, params=None):
    return pg.sql(sql, params, dbname="suppliers")


@pytest.fixture
def healthy(pg, agent):
    """Each case starts from, and ends in, a healthy cluster."""
    q(pg, "SELECT bdr.emulation_setup(%s, VARIADIC %s)", (LOCAL, list(PEERS)))
    agent.wait_state(LOCAL, "ready", 10)
    yield
    q(pg, "SELECT bdr.emulation_setup(%s, VARIADIC %s)", (LOCAL, list(PEERS)))
    agent.wait_state(LOCAL, "ready", 10)


def set_status(code):
    return ("UPDATE bdr.bdr_nodes SET node_status = %s WHERE node_name = %s", (code, LOCAL))


# id, SQL to break the node, expected state, reason regex, HTTP code
CASES = [
    ("status-r", set_status("r"), "ready", None, 200),
    # joining: the reason says so and names the status code
    ("status-b", set_status("b"), "down", r"join.*\bb\b", 503),
    ("status-i", set_status("i"), "down", r"join.*\bi\b", 503),
    ("status-c", set_status("c"), "down", r"join.*\bc\b", 503),
    ("status-o", set_status("o"), "down", r"join.*\bo\b", 503),
    ("status-k", set_status("k"), "down", r"part", 503),
    ("inactive", ("UPDATE bdr.emulation_control SET is_active = false", None), "down",
     r"not active|inactive", 503),
    ("read-only", ("UPDATE bdr.bdr_nodes SET node_read_only = true WHERE node_name = %s",
                   (LOCAL,)), "down", r"read.?only", 503),
    ("slot-inactive", ("UPDATE bdr.bdr_node_slots SET walsender_active = false, walsender_pid = NULL"
                       " WHERE node_name = %s", (PEERS[1],)), "degraded", PEERS[1], 200),
    ("no-local-node", ("DELETE FROM bdr.bdr_nodes WHERE node_name = %s", (LOCAL,)), "down",
     r"not found|missing|unknown", 503),
]


@pytest.mark.parametrize("case_id,breaker,state,reason_re,code", CASES, ids=[c[0] for c in CASES])
def test_catalog_state(pg, agent, healthy, case_id, breaker, state, reason_re, code):
    sql, params = breaker
    q(pg, sql, params)
    n = agent.wait_state(LOCAL, state, 5, reason_re=reason_re)
    assert n["flavor"] == "bdr"
    if state == "ready":
        assert n["weight"] == 100 and not n["reason"], n
    elif state == "down":
        assert n["weight"] == 0, n
        assert n["reason"], n
    else:
        assert 0 < n["weight"] <= 100, n
    for path in ("/", f"/node/{LOCAL}"):
        r = agent.get(path)
        assert r.status == code, (path, r)
        assert state in r.text and LOCAL in r.text, r
        if reason_re:
            assert re.search(reason_re, r.text, re.I), r
    h = agent.get("/", method="HEAD")
    assert h.status == code and h.body == b"", h


def test_name_comes_from_catalog(agent, healthy):
    st = agent.status_json()
    assert st["default_node"] == LOCAL
    assert [n["name"] for n in st["nodes"]] == [LOCAL]
    n = st["nodes"][0]
    assert n["dbname"] == "suppliers" and n["user"] == "pgbdr_monitor"
    assert agent.get(f"/node/{LOCAL}").status == 200
    assert agent.get("/node/nosuchnode").status == 404


def outgoing(agent, at_least):
    def seen():
        n = agent.node(LOCAL)
        v = n.get("outgoing_lag_bytes")
        return n if isinstance(v, int) and v >= at_least else False
    return wait_for(seen, 5, desc=f"outgoing lag >= {at_least}")


def test_caught_up_slots_have_small_outgoing_lag(agent, healthy):
    def known():
        n = agent.node(LOCAL)
        return n if isinstance(n["outgoing_lag_bytes"], int) else False
    n = wait_for(known, 5, desc="outgoing_lag_bytes known")
    assert 0 <= n["outgoing_lag_bytes"] < MB
    # Its own lag is in its peers' slots, which this agent does not read.
    assert n["lag_bytes"] is None
    assert n["state"] == "ready" and n["weight"] == 100


def test_peer_behind_is_not_this_nodes_lag(pg, agent, healthy):
    lag = 8 * MB
    q(pg, "UPDATE bdr.bdr_node_slots SET replay_location = pg_current_wal_lsn() - %s::numeric"
          " WHERE node_name = %s", (lag, PEERS[0]))
    n = outgoing(agent, lag)
    assert lag <= n["outgoing_lag_bytes"] < lag + MB, n
    assert n["state"] == "ready" and n["weight"] == 100, n
    assert agent.get("/").status == 200
    # ?lag= cannot be promised on an unknown lag: it fails closed.
    assert agent.get("/?lag=1GB").status == 503
    assert agent.get(f"/node/{LOCAL}?lag=1GB").status == 503
    assert agent.get("/").status == 200


def test_peer_far_behind_is_not_this_nodes_lag(pg, agent, healthy):
    q(pg, "UPDATE bdr.bdr_node_slots SET replay_location = '0/0' WHERE node_name = %s",
      (PEERS[1],))
    expected = pg.scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint")
    assert expected > MAX_LAG
    n = outgoing(agent, expected)
    assert n["state"] == "ready" and n["weight"] == 100, n
    assert agent.get("/").status == 200


def test_inactive_slot_degrades_by_name(pg, agent, healthy):
    q(pg, "UPDATE bdr.bdr_node_slots SET replay_location = '0/0', walsender_active = false"
          " WHERE node_name = %s", (PEERS[0],))
    n = agent.wait_state(LOCAL, "degraded", 5, reason_re=PEERS[0])
    assert n["lag_bytes"] is None and n["weight"] == 100, n


def test_monitor_role_is_least_privilege(pg):
    assert pg.scalar("SELECT rolsuper OR rolreplication FROM pg_roles "
                     "WHERE rolname = 'pgbdr_monitor'") is False
    assert pg.scalar("SELECT has_table_privilege('pgbdr_monitor', 'bdr.emulation_control', "
                     "'SELECT')", dbname="suppliers") is False
    assert pg.scalar("SELECT has_table_privilege('pgbdr_monitor', 'bdr.bdr_nodes', 'UPDATE')",
                     dbname="suppliers") is False
