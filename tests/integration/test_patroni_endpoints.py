"""The Patroni endpoint names, as Patroni's REST API documents them,
for GET, HEAD and OPTIONS: /primary, /read-write and /leader answer 200
on the write leader only; /replica on a node that serves reads and is
not the leader; /read-only and /readiness on any node that serves
reads; /health whenever PostgreSQL answers, whatever its role or
maintenance; /liveness while the agent runs. Every node is asked as
the default node of an agent watching the same cluster (two plain
nodes on one server, the one with priority 1 leads, and a dead one)."""

import os

import pytest

from harness import FAST_AGENT, Agent, free_port, node_section, wait_for

METHODS = ("GET", "HEAD", "OPTIONS")

# path -> the nodes (as default node) that answer 200; all others 503
PATRONI = {
    "/primary": {"leader"},
    "/read-write": {"leader"},
    "/leader": {"leader"},
    "/replica": {"replica"},
    "/read-only": {"leader", "replica"},
    "/readiness": {"leader", "replica"},
    "/health": {"leader", "replica"},
    "/liveness": {"leader", "replica", "dead"},
}


@pytest.fixture(scope="module")
def cluster(module_registry, plain_pg, module_password):
    dead = {"dsn": f"host=127.0.0.1 port={free_port()} dbname=app user=x", "flavor": "plain"}
    sections = {
        "leader": node_section(plain_pg, module_password, priority=1),
        "replica": node_section(plain_pg, module_password, priority=2),
        "dead": dict(dead, priority=3),
    }
    agents = {}
    for first in sections:
        order = [first] + [n for n in sections if n != first]
        maint = os.path.join(module_registry.mkdtemp(f"maint-{first}"), "maintenance")
        agents[first] = Agent(
            module_registry,
            [("agent", dict(FAST_AGENT, maintenance_file=maint))]
            + [(f"node.{n}", sections[n]) for n in order],
            name=f"patroni-{first}").start()
        agents[first].maintenance_file = maint
    for a in agents.values():
        a.wait_state("leader", "ready", 15)
        a.wait_state("replica", "ready", 15)
        a.wait_state("dead", "down", 15)
        wait_for(lambda: a.status_json()["write_node"] == "leader", 15, desc="leader chosen")
    return agents


@pytest.mark.parametrize("path", sorted(PATRONI))
def test_patroni_path(cluster, path):
    for node, agent in cluster.items():
        want = 200 if node in PATRONI[path] else 503
        for method in METHODS:
            r = agent.get(path, method=method)
            assert r.status == want, (path, node, method, r.body)
            if method == "HEAD":
                assert r.body == b""
            if r.status == 503 and method == "GET":
                # the body names the condition that failed
                assert b": " in r.body, r.body


def test_replica_lag_limit(cluster):
    # Patroni's /replica?lag=: plain PostgreSQL has no lag to exceed
    assert cluster["replica"].get("/replica?lag=0").status == 200
    assert cluster["replica"].get("/replica?lag=abc").status == 400
    r = cluster["leader"].get("/replica?lag=1GB")
    assert r.status == 503 and b"the write leader is not a replica" in r.body, r.body


def test_failed_write_names_the_leader(cluster):
    r = cluster["replica"].get("/primary")
    assert r.status == 503 and b"not the write leader (leader: leader)" in r.body, r.body


def test_health_ignores_maintenance_but_readiness_does_not(cluster):
    """Patroni: /health is PostgreSQL up and running; the node drained
    for maintenance still runs, but takes no new reads."""
    agent = cluster["replica"]
    with open(agent.maintenance_file, "w"):
        pass
    try:
        wait_for(lambda: agent.get("/read-only").status == 503, 10, desc="drained")
        for method in METHODS:
            assert agent.get("/health", method=method).status == 200
            assert agent.get("/readiness", method=method).status == 503
            assert agent.get("/liveness", method=method).status == 200
        assert b"maintenance file present" in agent.get("/readiness").body
    finally:
        os.unlink(agent.maintenance_file)
    wait_for(lambda: agent.get("/read-only").status == 200, 10, desc="back")
