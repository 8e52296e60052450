"""One question, three protocols, one answer: for every node, duty and
limit, HTTP (/node/NAME/DUTY?lag=...), agent-check ("NAME DUTY lag=...")
and SPOP (pgbdr-status with node, duty, lag) give the same verdict,
weight and reason, through a steady state (node1 leads, node3 lags
40MB), a failover (node1 inactive, node2 leads) and maintenance. One
agent watches three nodes of the BDR 1 emulation on one server."""

import os
import re

import pytest

import harness
import spop_client as sp
from agentcheck_helpers import agent_check, touch
from harness import FAST_AGENT, Agent, free_port, wait_for

NODES = ("node1", "node2", "node3")
DUTIES = ("any", "write", "read", "replica", "running")
LIMITS = ({}, {"lag": "16MB"}, {"lag_time": "5s"}, {"lag": "1GB"})
MB = 1024 * 1024
POLICY = {"drain_lag": "16MB", "max_lag": "64MB", "min_weight": 10}
LINE = re.compile(r"^(\w+) (\S+) weight=(\d+)%[^:\n]*(?:: (.*))?$")


def q(pg, db, sql, params=None):
    return pg.sql(sql, params, dbname=db)


def reset(pg):
    for name in NODES:
        harness.bdr_emulation_reset(pg, name, NODES)


def set_lag(pg, name, lag):
    """Node `name` is `lag` bytes behind: its peers' slots for it say so."""
    for peer in NODES:
        if peer != name:
            q(pg, peer, "UPDATE bdr.bdr_node_slots SET replay_location ="
                        " pg_current_wal_lsn() - %s::numeric WHERE node_name = %s", (lag, name))


@pytest.fixture(scope="module")
def pg(module_registry, module_password):
    pg = harness.bdr_emulation_server(module_registry, "answer", NODES, module_password)
    # WAL is cluster-wide: past 128MB, a 40MB lag can be set as "current LSN - lag".
    while pg.scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')") <= 128 * MB:
        pg.sql("CREATE TABLE IF NOT EXISTS walfill (x int); INSERT INTO walfill VALUES (1);"
               " SELECT pg_switch_wal()")
    reset(pg)
    return pg


@pytest.fixture(scope="module")
def agent(module_registry, pg, module_password):
    ports = {k: free_port() for k in ("agent", "spoe")}
    maint = os.path.join(module_registry.mkdtemp("answer-maint"), "maintenance")
    sections = [("agent", dict(FAST_AGENT, agent_listen=f"127.0.0.1:{ports['agent']}",
                               spoe_listen=f"127.0.0.1:{ports['spoe']}", agent_send_wait="50ms",
                               maintenance_file=maint, leader_return_delay="1s",
                               leader_handover="300ms")),
                ("policy", POLICY)]
    for i, name in enumerate(NODES, 1):
        sections.append((f"node.{name}", {"dsn": pg.tcp_dsn(name, password=module_password),
                                          "flavor": "bdr", "priority": 10 * i}))
    a = Agent(module_registry, sections, name="agent-answer").start()
    a.agent_port, a.spoe_port, a.maintenance_file = ports["agent"], ports["spoe"], maint
    return a


def seq(agent):
    return agent.get("/compact").text.split("\n")[1]


def over_http(agent, node, duty, limits):
    query = "&".join(f"{k}={v}" for k, v in limits.items())
    r = agent.get(f"/node/{node}/{duty}" + (f"?{query}" if query else ""))
    m = LINE.match(r.text.strip())
    assert r.status in (200, 503) and m, (r.status, r.text)
    return {"pass": r.status == 200, "state": m.group(1), "weight": int(m.group(3)),
            "reason": m.group(4) or ""}


def over_agent_check(agent, node, duty, limits):
    words = [node, duty] + [f"{k}={v}" for k, v in limits.items()]
    data, _ = agent_check(agent.agent_port, (" ".join(words) + "\n").encode())
    line = data.decode().rstrip("\n")
    m = re.match(r"^up ready (\d+)%$", line)
    if m:
        return {"pass": True, "weight": int(m.group(1)), "drain": False, "reason": None}
    if line == "up drain":
        return {"pass": False, "weight": 0, "drain": True, "reason": None}
    m = re.match(r"^down ready #(.*)$", line)
    assert m, line
    return {"pass": False, "weight": 0, "drain": False, "reason": m.group(1)}


def over_spop(client, node, duty, limits):
    client.next_id = getattr(client, "next_id", 0) + 1
    args = [("node", node), ("duty", duty)] + list(limits.items())
    v = sp.ack_vars(client.query(1, client.next_id, [("pgbdr-status", args)]))
    return {"pass": v["ready"], "state": v["state"], "weight": v["weight"],
            "reason": v["reason"], "node": v["node"]}


def ask_all(agent, client, node, duty, limits):
    """The three answers to one question, asked within one status
    publication (retried when a probe round published in between)."""
    for _ in range(50):
        before = seq(agent)
        h = over_http(agent, node, duty, limits)
        a = over_agent_check(agent, node, duty, limits)
        s = over_spop(client, node, duty, limits)
        if seq(agent) == before:
            return h, a, s
    raise AssertionError("the status never held still for three questions")


def assert_same_everywhere(agent):
    """Every node x duty x limit: one verdict, weight and reason. Returns
    the HTTP answers, for spot checks."""
    answers = {}
    with sp.SpopClient(agent.spoe_port) as client:
        client.hello()
        for node in NODES:
            for duty in DUTIES:
                for limits in LIMITS:
                    h, a, s = ask_all(agent, client, node, duty, limits)
                    what = (node, duty, limits, h, a, s)
                    assert h["pass"] == a["pass"] == s["pass"], what
                    assert h["weight"] == a["weight"] == s["weight"], what
                    assert h["reason"] == s["reason"], what
                    assert h["state"] == s["state"], what
                    assert s["node"] == node, what
                    if not h["pass"]:
                        # a 503 always says which condition failed
                        assert h["reason"], what
                        assert a["drain"] == (h["state"] == "draining"), what
                        if not a["drain"]:
                            assert a["reason"] == h["reason"], what
                    answers[(node, duty, tuple(limits.items()))] = h
    return answers


def wait_steady(agent, leader, states):
    for name, state in states.items():
        agent.wait_state(name, state, 15)
    wait_for(lambda: agent.status_json()["write_node"] == leader, 15, desc=f"{leader} leads")


def test_same_answer_through_a_failover(agent, pg):
    reset(pg)
    set_lag(pg, "node3", 40 * MB)
    wait_steady(agent, "node1", {"node1": "ready", "node2": "ready", "node3": "degraded"})
    wait_for(lambda: agent.node("node3")["lag_bytes"] is not None, 15, desc="node3's lag known")

    steady = assert_same_everywhere(agent)
    assert steady[("node1", "write", ())]["pass"]
    assert steady[("node2", "write", ())]["reason"] == "not the write leader (leader: node1)"
    assert steady[("node1", "replica", ())]["reason"] == "the write leader is not a replica"
    assert steady[("node2", "replica", ())]["pass"]
    assert steady[("node3", "read", ())]["pass"] and steady[("node3", "read", ())]["weight"] < 100
    assert steady[("node3", "read", (("lag", "16MB"),))]["reason"] == "lag 40MB > 16MB"
    assert steady[("node3", "read", (("lag", "1GB"),))]["pass"]

    # failover: node1 leaves (inactive in its database), node2 takes writes
    q(pg, "node1", "UPDATE bdr.emulation_control SET is_active = false")
    wait_steady(agent, "node2", {"node1": "down"})
    failed = assert_same_everywhere(agent)
    assert not failed[("node1", "any", ())]["pass"]
    assert failed[("node1", "write", ())]["reason"].startswith("not the write leader: ")
    assert failed[("node2", "write", ())]["pass"]
    assert failed[("node3", "write", ())]["reason"] == "not the write leader (leader: node2)"
    assert failed[("node1", "replica", ())]["pass"] is False
    assert failed[("node2", "replica", ())]["reason"] == "the write leader is not a replica"
    # node1 still answers its probes: PostgreSQL runs, the node does not serve
    assert failed[("node1", "running", ())]["pass"]

    # and back
    reset(pg)
    wait_steady(agent, "node1", {"node1": "ready", "node2": "ready", "node3": "ready"})
    assert_same_everywhere(agent)


def test_same_answer_in_maintenance(agent, pg):
    reset(pg)
    wait_steady(agent, "node1", {n: "ready" for n in NODES})
    touch(agent.maintenance_file)
    try:
        for name in NODES:
            agent.wait_state(name, "draining", 10)
        drained = assert_same_everywhere(agent)
        # reads drain; the write role is binary, never a drain
        assert drained[("node2", "read", ())]["state"] == "draining"
        assert drained[("node1", "write", ())]["state"] == "down"
        assert drained[("node1", "running", ())]["pass"]
    finally:
        os.unlink(agent.maintenance_file)
    for name in NODES:
        agent.wait_state(name, "ready", 10)
