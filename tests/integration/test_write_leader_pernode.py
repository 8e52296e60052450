"""Write leader with one agent per node and NO shared state, on the BDR
EMULATION (fixtures/bdr1_emulation.sql: BDR 1.0's catalog on
PostgreSQL 15, NOT BDR): each agent elects from its own node's catalog,
where every peer has the same priority.

The divergence case: node2's agent sees node1's walsender inactive for
5 s (node1's agent sees nothing wrong), so for that while the two
agents disagree, which nothing without shared state can prevent. node3
has no agent: it is the peer that still replicates with node2 then, so
node2 is not isolated (an isolated node takes no writes at all). After
it, both must name one leader again within leader_return_delay plus a
few intervals, and again after the other agent restarts.

Also: an agent that watches one node with no peer list does not name
itself leader unless leader_without_peers says it may."""

import time

import pytest

from agentcheck_helpers import agent_check
from harness import (FAST_AGENT, Agent, bdr_emulation_reset, bdr_emulation_server, free_port,
                     node_section, wait_for)

NODES = ("node1", "node2", "node3")
RETURN_DELAY = 3.0
HANDOVER = 0.5
LEADER_KEYS = {"leader_return_delay": f"{int(RETURN_DELAY * 1000)}ms",
               "leader_handover": f"{int(HANDOVER * 1000)}ms"}
FEW = 3.0                                  # a few intervals, on a loaded machine


def q(pg, db, sql, params=None):
    return pg.sql(sql, params, dbname=db)


def reset_node(pg, name):
    bdr_emulation_reset(pg, name, NODES)


@pytest.fixture(scope="module")
def pg(module_registry, module_password):
    return bdr_emulation_server(module_registry, "pernode", NODES, module_password)


def start_agent(registry, pg, password, name):
    agent_port = free_port()
    a = Agent(registry, [
        ("postgresql", [("host", "127.0.0.1"), ("port", pg.port), ("database", name),
                        ("user", "pgbdr_monitor"), ("password", password)]),
        ("agent", dict(FAST_AGENT, agent_listen=f"127.0.0.1:{agent_port}", **LEADER_KEYS)),
    ], name=f"agent-{name}")
    a.agent_port = agent_port
    return a.start()


def named(agents):
    return [a.status_json()["write_node"] for a in agents]


def test_divergent_histories_converge(module_registry, pg, module_password, record_property):
    a1, a2 = (start_agent(module_registry, pg, module_password, n) for n in NODES[:2])
    for a, n in ((a1, "node1"), (a2, "node2")):
        a.wait_state(n, "ready", 10)
    wait_for(lambda: named((a1, a2)) == ["node1", "node1"], 10, desc="both name node1")

    # node2's agent alone sees node1 go for 5 s and elects node2.
    q(pg, "node2", "UPDATE bdr.bdr_node_slots SET walsender_active = false "
                   "WHERE node_name = 'node1'")
    wait_for(lambda: a2.status_json()["write_node"] == "node2", HANDOVER + FEW,
             desc="node2's agent elects node2 during the flip")
    assert a1.status_json()["write_node"] == "node1"
    time.sleep(5)
    reset_node(pg, "node2")
    t_end = time.monotonic()

    # Same facts again: one name within leader_return_delay + a few intervals.
    wait_for(lambda: named((a1, a2)) == ["node1", "node1"], RETURN_DELAY + HANDOVER + FEW,
             interval=0.1, desc="both agents name node1 again")
    converged = time.monotonic() - t_end
    record_property("converged_after_flip_s", round(converged, 2))
    assert a1.get("/write").status == 200 and a2.get("/write").status == 503
    data, _ = agent_check(a2.agent_port, b"node2 write\n")
    assert data == b"down ready #not the write leader (leader: node1)\n", data

    # Then the other agent restarts: still one name.
    a1.stop()
    a1.start()
    a1.wait_state("node1", "ready", 10)
    t_restart = time.monotonic()
    wait_for(lambda: named((a1, a2)) == ["node1", "node1"], RETURN_DELAY + HANDOVER + FEW,
             interval=0.1, desc="both agents name node1 after the restart")
    print(f"\nconverged {converged:.2f}s after the flip ended, "
          f"{time.monotonic() - t_restart:.2f}s after the restart")
    for _ in range(10):
        assert named((a1, a2)) == ["node1", "node1"]
        assert [a.get("/write").status for a in (a1, a2)] == [200, 503]
        time.sleep(0.1)


def lone_agent(registry, plain_pg, password, **agent_items):
    agent_port = free_port()
    a = Agent(registry, [
        ("agent", dict(FAST_AGENT, agent_listen=f"127.0.0.1:{agent_port}", **agent_items)),
        ("node.solo", node_section(plain_pg, password)),
    ], name="agent-solo")
    a.agent_port = agent_port
    return a.start()


def test_lone_node_leads_only_when_config_allows(registry, plain_pg, module_password):
    a = lone_agent(registry, plain_pg, module_password)
    a.wait_state("solo", "ready", 10)
    time.sleep(1)
    r = a.get("/write")
    assert r.status == 503 and "leader_without_peers" in r.text, r.text
    data, _ = agent_check(a.agent_port, b"solo write\n")
    assert data.startswith(b"down ready #not the write leader (leader: none: no peers"), data
    # plain traffic is not affected
    assert a.get("/").status == 200
    a.stop()

    b = lone_agent(registry, plain_pg, module_password, leader_without_peers="yes")
    b.wait_state("solo", "ready", 10)
    wait_for(lambda: b.get("/write").status == 200, 5, desc="/write 200")
    data, _ = agent_check(b.agent_port, b"solo write\n")
    assert data == b"up ready 100%\n", data
