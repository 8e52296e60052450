"""pglogical 2: two real PostgreSQL 15 nodes replicating both ways.

The agent monitors node A as pgbdr_monitor with only
sql/grants/pglogical.sql, over 127.0.0.1 with scram-sha-256, and
detects the flavor itself.
"""

import pytest

from harness import FAST_AGENT, Agent, PgServer, node_section, wait_for

SUB_A = "sub_a_from_b"  # on A, pulls from B
SUB_B = "sub_b_from_a"  # on B, pulls from A


def setup_node(pg, node_name):
    pg.create_database("app")
    pg.sql("CREATE EXTENSION pglogical", dbname="app")
    pg.sql("CREATE TABLE t (id int PRIMARY KEY, origin text)", dbname="app")
    pg.sql("SELECT pglogical.create_node(node_name := %s, dsn := %s)",
           (node_name, pg.dsn_socket("app")), dbname="app")
    pg.sql("SELECT pglogical.replication_set_add_table('default', 't')", dbname="app")


def subscribe(pg, sub, provider):
    pg.sql("SELECT pglogical.create_subscription(subscription_name := %s, provider_dsn := %s,"
           " replication_sets := ARRAY['default'], synchronize_structure := false,"
           " synchronize_data := false, forward_origins := '{}')",
           (sub, provider.dsn_socket("app")), dbname="app")


def sub_status(pg, sub):
    return pg.scalar("SELECT status FROM pglogical.show_subscription_status(%s)", (sub,),
                     dbname="app")


@pytest.fixture(scope="module")
def nodes(module_registry, module_password):
    a = PgServer(module_registry, "pgl-a").init().start()
    b = PgServer(module_registry, "pgl-b").init().start()
    setup_node(a, "node_a")
    setup_node(b, "node_b")
    subscribe(a, SUB_A, b)
    subscribe(b, SUB_B, a)
    wait_for(lambda: sub_status(a, SUB_A) == "replicating", 30, desc=f"{SUB_A} replicating")
    wait_for(lambda: sub_status(b, SUB_B) == "replicating", 30, desc=f"{SUB_B} replicating")
    # Both directions really carry data.
    a.sql("INSERT INTO t VALUES (1, 'a')", dbname="app")
    b.sql("INSERT INTO t VALUES (2, 'b')", dbname="app")
    for pg in (a, b):
        wait_for(lambda pg=pg: pg.scalar("SELECT count(*) FROM t", dbname="app") == 2, 30,
                 desc="rows replicated both ways")
    a.apply_grants("pglogical", dbname="app", password=module_password)
    return a, b


@pytest.fixture(scope="module")
def agent(module_registry, nodes, module_password):
    a, _ = nodes
    return Agent(module_registry, [("agent", dict(FAST_AGENT)),
                                   ("node.a", node_section(a, module_password, flavor=None))],
                 name="agent-pgl").start()


def test_monitor_role_is_not_superuser(nodes):
    a, _ = nodes
    assert a.scalar("SELECT rolsuper OR rolreplication FROM pg_roles "
                    "WHERE rolname = 'pgbdr_monitor'") is False


def test_ready_when_replicating(agent):
    n = agent.wait_state("a", "ready", 10)
    assert n["flavor"] == "pglogical"
    assert n["user"] == "pgbdr_monitor"
    assert n["weight"] == 100
    r = agent.get("/node/a")
    assert r.status == 200 and "ready" in r.text, r
    assert agent.get("/").status == 200


def test_disabled_subscription_is_down_then_ready(nodes, agent):
    a, _ = nodes
    agent.wait_state("a", "ready", 10)
    a.sql("SELECT pglogical.alter_subscription_disable(%s, immediate := true)", (SUB_A,),
          dbname="app")
    try:
        wait_for(lambda: sub_status(a, SUB_A) == "disabled", 10, desc=f"{SUB_A} disabled")
        # a round that began before the catalog said "disabled" may say "down" first
        n = agent.wait_state("a", "down", 5, reason_re=rf"{SUB_A}.*disabled")
        assert n["weight"] == 0
        r = agent.get("/node/a")
        assert r.status == 503, r
        assert SUB_A in r.text, r
    finally:
        a.sql("SELECT pglogical.alter_subscription_enable(%s, immediate := true)", (SUB_A,),
              dbname="app")
    wait_for(lambda: sub_status(a, SUB_A) == "replicating", 30, desc="re-enabled")
    n = agent.wait_state("a", "ready", 10)
    assert not n["reason"]
    assert agent.get("/node/a").status == 200


def test_down_subscription_when_provider_stops(nodes, agent):
    """The provider B stops: A's subscription leaves 'replicating' and
    A goes down naming it; B is back and the subscription replicates
    again: A is ready again."""
    a, b = nodes
    agent.wait_state("a", "ready", 10)
    b.stop()
    try:
        agent.wait_state("a", "down", 30, reason_re=SUB_A)
        assert agent.get("/node/a").status == 503
    finally:
        b.start()
    # pglogical retries a failed apply worker on its own schedule, which
    # can be long; kick the subscription so that it reconnects now (the
    # agent's behaviour is what is under test, not pglogical's backoff).
    a.sql("SELECT pglogical.alter_subscription_disable(%s, immediate := true)", (SUB_A,),
          dbname="app")
    a.sql("SELECT pglogical.alter_subscription_enable(%s, immediate := true)", (SUB_A,),
          dbname="app")
    wait_for(lambda: sub_status(a, SUB_A) == "replicating", 60, desc=f"{SUB_A} replicating")
    agent.wait_state("a", "ready", 10)
    assert agent.get("/node/a").status == 200
