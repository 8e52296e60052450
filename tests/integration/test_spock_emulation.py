"""Spock (pgEdge), against an EMULATION of its catalog
(fixtures/spock_emulation.sql).

Spock needs a patched PostgreSQL and is not packaged here. The emulation
gives the agent Spock's names and columns (spock.node, spock.local_node,
spock.sub_show_status(), spock.lag_tracker) and lets the tests drive the
local node, every subscription status and the lag. The agent connects as
pgbdr_monitor with only sql/grants/spock.sql and detects the flavor.
"""

import os

import pytest

from harness import FAST_AGENT, FIXTURES_DIR, Agent, PgServer, node_section, wait_for

LOCAL = "n1"
PEERS = ("n2", "n3")
MB = 1024 * 1024


def reset(pg):
    pg.sql("SELECT spock.emulation_setup(%s, VARIADIC %s)", (LOCAL, list(PEERS)), dbname="app")


@pytest.fixture(scope="module")
def pg(module_registry, module_password):
    pg = PgServer(module_registry, "spock", pglogical=False).init().start()
    pg.create_database("app")
    pg.run_file(os.path.join(FIXTURES_DIR, "spock_emulation.sql"), dbname="app")
    reset(pg)
    pg.apply_grants("spock", dbname="app", password=module_password)
    return pg


@pytest.fixture(scope="module")
def agent(module_registry, pg, module_password):
    return Agent(module_registry, [
        ("agent", dict(FAST_AGENT)),
        ("policy", {"drain_lag": "4MB", "max_lag": "16MB", "min_weight": 10,
                    "max_lag_time": "30s"}),
        ("node.spock", node_section(pg, module_password, flavor=None)),
    ], name="agent-spock").start()


@pytest.fixture
def healthy(pg, agent):
    reset(pg)
    agent.wait_state("spock", "ready", 10)
    yield
    reset(pg)
    agent.wait_state("spock", "ready", 10)


def q(pg, sql, params=None):
    pg.sql(sql, params, dbname="app")


def set_status(peer, status):
    return ("UPDATE spock.emulation_subscriptions SET status = %s WHERE provider_node = %s",
            (status, peer))


SUB0 = f"sub_{LOCAL}_{PEERS[0]}"

# id, steps, state, reason regex
CASES = [
    ("replicating", [], "ready", None),
    ("disabled", [set_status(PEERS[0], "disabled")], "down", rf"{SUB0} is disabled"),
    ("initializing", [set_status(PEERS[0], "initializing")], "down", rf"{SUB0} is initializing"),
    ("unknown", [set_status(PEERS[0], "unknown")], "down", rf"{SUB0} is unknown"),
    # a provider out of reach: the other subscription still replicates
    ("down-one", [set_status(PEERS[0], "down")], "degraded", rf"{SUB0} from {PEERS[0]} is down"),
    ("down-all", [set_status(p, "down") for p in PEERS], "down", rf"{SUB0} from {PEERS[0]}"),
    ("no-local-node", [("DELETE FROM spock.local_node", None)], "down", r"no spock local node"),
]


@pytest.mark.parametrize("case_id,steps,state,reason_re", CASES, ids=[c[0] for c in CASES])
def test_subscription_and_node_states(pg, agent, healthy, case_id, steps, state, reason_re):
    for sql, params in steps:
        q(pg, sql, params)
    n = agent.wait_state("spock", state, 5, reason_re=reason_re)
    assert n["flavor"] == "spock", n
    assert agent.get("/node/spock").status == (503 if state == "down" else 200)
    if state == "ready":
        assert n["weight"] == 100 and not n["reason"], n


def test_idle_lag_is_zero(agent, healthy):
    """Spock 5 counts an idle subscription's lag time from its last commit
    (4 s here); with no byte outstanding the agent reports 0."""
    n = agent.node("spock")
    assert n["lag_bytes"] == 0 and n["lag_seconds"] == 0, n


def test_lag_tracker_degrades_then_downs(pg, agent, healthy):
    q(pg, "UPDATE spock.emulation_lag SET replication_lag_bytes = %s,"
          " replication_lag = '12 seconds' WHERE origin_name = %s", (8 * MB, PEERS[1]))
    n = agent.wait_state("spock", "degraded", 5, reason_re=r"replication lag 8")
    assert n["lag_bytes"] == 8 * MB and n["lag_seconds"] == pytest.approx(12.0), n
    q(pg, "UPDATE spock.emulation_lag SET replication_lag_bytes = %s WHERE origin_name = %s",
      (64 * MB, PEERS[0]))
    n = agent.wait_state("spock", "down", 5, reason_re=r"replication lag 64")
    assert n["lag_bytes"] == 64 * MB, n


def test_lag_time_beyond_max_is_down(pg, agent, healthy):
    q(pg, "UPDATE spock.emulation_lag SET replication_lag_bytes = 100,"
          " replication_lag = '1 minute' WHERE origin_name = %s", (PEERS[0],))
    agent.wait_state("spock", "down", 5, reason_re=r"replication lag 60\.0s > 30\.0s")


def test_no_lag_rows_is_unknown_not_zero(pg, agent, healthy):
    """Subscriptions but no lag_tracker row: unknown, and with max_lag set
    an unknown lag serves at min_weight only, never at 100%."""
    q(pg, "DELETE FROM spock.emulation_lag")
    wait_for(lambda: agent.node("spock")["lag_bytes"] is None, 5, desc="lag_bytes null")
    n = agent.wait_state("spock", "degraded", 5, reason_re=r"lag unknown")
    assert n["lag_seconds"] is None and n["weight"] < 100, n


@pytest.mark.parametrize("value", ["all", "user"])
def test_spock_readonly_makes_the_node_read_only(pg, agent, healthy, value):
    """spock.readonly (off, user, all) other than off: the node takes no
    writes; under read_only = down (the default) it is down, named.
    Without the Spock library the GUC is only a placeholder, which ALTER
    SYSTEM refuses: the emulation sets it per database and ends the
    agent's session, so that its next one reads the new value."""
    def kick():
        pg.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
               " WHERE usename = 'pgbdr_monitor'")
    pg.sql(f"ALTER DATABASE app SET spock.readonly = '{value}'")
    kick()
    try:
        n = agent.wait_state("spock", "down", 10, reason_re=r"read-only")
        assert n["read_only"] and not n["write_leader"], n
    finally:
        pg.sql("ALTER DATABASE app RESET spock.readonly")
        kick()
    n = agent.wait_state("spock", "ready", 10)
    assert not n["read_only"], n


def test_name_comes_from_spock_node(module_registry, pg, module_password, healthy):
    # A [postgresql] section without a flavor is a BDR check; this one says auto.
    a = Agent(module_registry, [
        ("postgresql", [("host", "127.0.0.1"), ("port", pg.port), ("database", "app"),
                        ("user", "pgbdr_monitor"), ("password", module_password),
                        ("flavor", "auto")]),
        ("agent", dict(FAST_AGENT)),
    ], name="agent-spock-classic").start()
    a.wait_state(LOCAL, "ready", 10)
    st = a.status_json()
    assert st["default_node"] == LOCAL
    assert st["peers"] == [{"name": p, "up": True} for p in PEERS], st
    q(pg, *set_status(PEERS[1], "down"))
    wait_for(lambda: a.status_json()["peers"] == [{"name": PEERS[0], "up": True},
                                                  {"name": PEERS[1], "up": False}], 5,
             desc="peer with a down subscription is not up")
    a.stop()


def test_monitor_role_is_least_privilege(pg):
    assert pg.scalar("SELECT rolsuper OR rolreplication FROM pg_roles "
                     "WHERE rolname = 'pgbdr_monitor'") is False
    assert pg.scalar("SELECT has_table_privilege('pgbdr_monitor',"
                     " 'spock.emulation_subscriptions', 'SELECT')", dbname="app") is False
