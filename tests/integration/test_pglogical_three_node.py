"""pglogical 2, three real PostgreSQL 15 nodes in a full mesh: every node
subscribes to the other two (forward_origins '{}', so nothing loops).

One agent watches all three as [node.n1..n3], as pgbdr_monitor with only
sql/grants/pglogical.sql. When one node stops, it is down, and its two
peers stay in service, degraded: each still replicates from the other,
so their subscription from the stopped node being "down" means that
provider is out of reach, not that they are cut off.
"""

import pytest

from harness import FAST_AGENT, Agent, PgServer, node_section, wait_for

NAMES = ("n1", "n2", "n3")


def sub_name(me, provider):
    return f"sub_{me}_from_{provider}"


def status_of(pg, sub):
    return pg.scalar("SELECT status FROM pglogical.show_subscription_status(%s)", (sub,),
                     dbname="app")


@pytest.fixture(scope="module")
def nodes(module_registry, module_password):
    pgs = {n: PgServer(module_registry, f"pgl3-{n}").init().start() for n in NAMES}
    for name, pg in pgs.items():
        pg.create_database("app")
        pg.sql("CREATE EXTENSION pglogical", dbname="app")
        pg.sql("CREATE TABLE t (id int PRIMARY KEY, origin text)", dbname="app")
        pg.sql("SELECT pglogical.create_node(node_name := %s, dsn := %s)",
               (name, pg.dsn_socket("app")), dbname="app")
        pg.sql("SELECT pglogical.replication_set_add_table('default', 't')", dbname="app")
    for me, pg in pgs.items():
        for provider in NAMES:
            if provider == me:
                continue
            pg.sql("SELECT pglogical.create_subscription(subscription_name := %s,"
                   " provider_dsn := %s, replication_sets := ARRAY['default'],"
                   " synchronize_structure := false, synchronize_data := false,"
                   " forward_origins := '{}')",
                   (sub_name(me, provider), pgs[provider].dsn_socket("app")), dbname="app")
    for me, pg in pgs.items():
        for provider in NAMES:
            if provider != me:
                sub = sub_name(me, provider)
                wait_for(lambda pg=pg, sub=sub: status_of(pg, sub) == "replicating", 60,
                         desc=f"{sub} replicating")
    for pg in pgs.values():
        pg.apply_grants("pglogical", dbname="app", password=module_password)
    return pgs


@pytest.fixture(scope="module")
def agent(module_registry, nodes, module_password):
    sections = [("agent", dict(FAST_AGENT))]
    sections += [(f"node.{n}", node_section(nodes[n], module_password, flavor=None))
                 for n in NAMES]
    return Agent(module_registry, sections, name="agent-pgl3").start()


def all_ready(agent, timeout):
    for n in NAMES:
        agent.wait_state(n, "ready", timeout)


def test_writes_replicate_everywhere(nodes):
    for i, name in enumerate(NAMES):
        nodes[name].sql("INSERT INTO t VALUES (%s, %s)", (i, name), dbname="app")
    for name, pg in nodes.items():
        wait_for(lambda pg=pg: pg.sql("SELECT id, origin FROM t ORDER BY id", dbname="app")
                 == [(0, "n1"), (1, "n2"), (2, "n3")], 30, desc=f"all rows on {name}")


def test_all_ready(agent):
    all_ready(agent, 15)
    # A node's lag is read in its providers' slots for it: known once
    # every provider has been probed too.
    st = wait_for(lambda: (lambda st: st if all(isinstance(n["lag_bytes"], int)
                                                 for n in st["nodes"]) else False)(
        agent.status_json()), 10, desc="every node's lag known")
    assert st["ready_nodes"] == 3
    for n in st["nodes"]:
        assert n["flavor"] == "pglogical" and n["weight"] == 100, n


def kick_stalled_subscriptions(nodes):
    """pglogical retries a lost provider after 5 s, then only after about
    80 s: re-enable what is not replicating, as an operator would, so the
    test waits on the agent, not on pglogical's retry timer."""
    for me, pg in nodes.items():
        for provider in nodes:
            if provider == me:
                continue
            sub = sub_name(me, provider)
            if status_of(pg, sub) != "replicating":
                pg.sql("SELECT pglogical.alter_subscription_disable(%s, immediate := true)",
                       (sub,), dbname="app")
                pg.sql("SELECT pglogical.alter_subscription_enable(%s, immediate := true)",
                       (sub,), dbname="app")


def test_stopped_node_down_peers_degraded_then_all_ready(nodes, agent):
    all_ready(agent, 15)
    nodes["n3"].stop()
    try:
        agent.wait_state("n3", "down", 10)
        for peer in ("n1", "n2"):
            n = agent.wait_state(peer, "degraded", 30)
            assert n["weight"] > 0, n
            assert agent.get(f"/node/{peer}").status == 200
        assert agent.get("/node/n3").status == 503
        # still degraded, never down, a few rounds later
        for _ in range(10):
            for peer in ("n1", "n2"):
                assert agent.node(peer)["state"] == "degraded", agent.node(peer)
        # the surviving pair keeps replicating
        nodes["n1"].sql("INSERT INTO t VALUES (10, 'n1 alone')", dbname="app")
        wait_for(lambda: nodes["n2"].scalar("SELECT count(*) FROM t WHERE id = 10",
                                            dbname="app") == 1, 30, desc="n1 -> n2")
    finally:
        nodes["n3"].start()
    try:
        all_ready(agent, 15)
    except AssertionError:
        kick_stalled_subscriptions(nodes)
        all_ready(agent, 60)
    # and n3 caught up with what it missed
    wait_for(lambda: nodes["n3"].scalar("SELECT count(*) FROM t WHERE id = 10",
                                        dbname="app") == 1, 30, desc="n3 caught up")
