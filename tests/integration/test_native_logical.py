"""Native logical replication: two real PostgreSQL 15 servers, a
PUBLICATION on one and a SUBSCRIPTION on the other.

One agent watches both as pgbdr_monitor with only sql/grants/logical.sql
(no pg_monitor), over 127.0.0.1 with a password, and detects the flavor
itself: the subscriber by its subscription, the publisher by its pgoutput
slot.
"""

import pytest

from harness import FAST_AGENT, Agent, PgServer, node_section, wait_for

SUB = "app_sub"
PUB = "app_pub"


def sync_states(sub):
    return sub.sql("SELECT srsubstate FROM pg_subscription_rel", dbname="app")


@pytest.fixture(scope="module")
def nodes(module_registry, module_password):
    pub = PgServer(module_registry, "lr-pub", pglogical=False).init().start()
    sub = PgServer(module_registry, "lr-sub", pglogical=False).init().start()
    for pg in (pub, sub):
        pg.create_database("app")
        pg.sql("CREATE TABLE t (id int PRIMARY KEY, v text)", dbname="app")
    pub.sql("INSERT INTO t VALUES (1, 'before')", dbname="app")
    pub.sql(f"CREATE PUBLICATION {PUB} FOR TABLE t", dbname="app")
    sub.sql(f"CREATE SUBSCRIPTION {SUB} CONNECTION '{pub.dsn_socket('app')}'"
            f" PUBLICATION {PUB}", dbname="app")
    wait_for(lambda: sync_states(sub) == [("r",)], 30, desc="initial sync done")
    pub.sql("INSERT INTO t VALUES (2, 'after')", dbname="app")
    wait_for(lambda: sub.scalar("SELECT count(*) FROM t", dbname="app") == 2, 30,
             desc="rows replicated")
    for pg in (pub, sub):
        pg.apply_grants("logical", dbname="app", password=module_password)
    return pub, sub


@pytest.fixture(scope="module")
def agent(module_registry, nodes, module_password):
    pub, sub = nodes
    return Agent(module_registry, [
        ("agent", dict(FAST_AGENT)),
        ("policy", {"drain_lag": "64MB", "max_lag": "256MB"}),
        ("node.pub", node_section(pub, module_password, flavor=None)),
        ("node.sub", node_section(sub, module_password, flavor=None)),
    ], name="agent-logical").start()


@pytest.fixture
def healthy(agent):
    agent.wait_state("sub", "ready", 30)
    agent.wait_state("pub", "ready", 30)
    yield


def test_monitor_role_is_least_privilege(nodes):
    for pg in nodes:
        assert pg.scalar("SELECT rolsuper OR rolreplication OR pg_has_role('pgbdr_monitor',"
                         " 'pg_monitor', 'MEMBER') FROM pg_roles"
                         " WHERE rolname = 'pgbdr_monitor'") is False


def test_both_sides_ready_and_detected(agent, healthy):
    for name in ("sub", "pub"):
        n = agent.node(name)
        assert n["flavor"] == "logical", n
        assert n["user"] == "pgbdr_monitor", n
        assert n["weight"] == 100 and not n["reason"], n
        assert agent.get(f"/node/{name}").status == 200


def test_lag_is_measured_on_both_sides(nodes, agent, healthy):
    """The subscriber's apply backlog and the publisher's slot lag are
    known (not null) and small once caught up."""
    pub, sub = nodes
    pub.sql("INSERT INTO t SELECT g, 'bulk' FROM generate_series(100, 5099) g", dbname="app")
    wait_for(lambda: sub.scalar("SELECT count(*) FROM t", dbname="app") == 5002, 30,
             desc="bulk insert replicated")

    def caught_up():
        s, p = agent.node("sub"), agent.node("pub")
        return (s, p) if s["lag_bytes"] == 0 and p["lag_bytes"] == 0 else False
    s, p = wait_for(caught_up, 15, desc="both sides caught up")
    assert s["lag_seconds"] == 0, s
    assert p["lag_seconds"] is None, p  # a publisher measures bytes only


def test_disabled_subscription_is_down_then_ready(nodes, agent, healthy):
    _, sub = nodes
    sub.sql(f"ALTER SUBSCRIPTION {SUB} DISABLE", dbname="app")
    try:
        n = agent.wait_state("sub", "down", 10, reason_re=rf"subscription disabled: {SUB}")
        assert n["weight"] == 0, n
        r = agent.get("/node/sub")
        assert r.status == 503 and SUB in r.text, r
        # the publisher's slot has lost its reader
        agent.wait_state("pub", "degraded", 10, reason_re=rf"slot not streaming: {SUB}")
    finally:
        sub.sql(f"ALTER SUBSCRIPTION {SUB} ENABLE", dbname="app")
    n = agent.wait_state("sub", "ready", 30)
    assert not n["reason"], n
    agent.wait_state("pub", "ready", 30)


def test_initial_copy_is_not_ready_until_done(nodes, agent, healthy):
    """A table stuck in its initial copy (a conflicting row on the
    subscriber makes the COPY fail and retry): the subscriber's copy of it
    is incomplete, so it is not ready for reads until the copy is done."""
    pub, sub = nodes
    for pg in (pub, sub):
        pg.sql("CREATE TABLE t2 (id int PRIMARY KEY)", dbname="app")
        pg.sql("INSERT INTO t2 VALUES (1)", dbname="app")
    pub.sql(f"ALTER PUBLICATION {PUB} ADD TABLE t2", dbname="app")
    sub.sql(f"ALTER SUBSCRIPTION {SUB} REFRESH PUBLICATION", dbname="app")
    try:
        n = agent.wait_state("sub", "down", 15, reason_re=r"initial copy of 1 table\b")
        assert n["weight"] == 0, n
        assert agent.get("/node/sub").status == 503
    finally:
        sub.sql("DELETE FROM t2", dbname="app")
    wait_for(lambda: sorted(sync_states(sub)) == [("r",), ("r",)], 60, desc="t2 synced")
    agent.wait_state("sub", "ready", 30)


def test_unreachable_publisher_takes_subscriber_down(nodes, agent, healthy):
    """The publisher stops: the subscription's worker cannot run (it is
    restarted and fails again), the only subscription: down, named."""
    pub, _ = nodes
    pub.stop()
    try:
        agent.wait_state("pub", "down", 10)
        agent.wait_state("sub", "down", 30, reason_re=rf"worker not running: {SUB}")
    finally:
        pub.start()
    agent.wait_state("pub", "ready", 30)
    agent.wait_state("sub", "ready", 60)
