"""Write leader: one central agent watches three real PostgreSQL servers
and names ONE of them the write leader; HAProxy 2.6 runs
haproxy-examples/write-leader.cfg AS IS, each server asking the agent
"nodeN write". Through a scripted failover and failback, sampled every
100 ms, HAProxy must never have two write servers UP. Then: two agents
with the same config agree, and /write, /read on leader, non-leader and
read-only nodes. Plain PostgreSQL is enough: leadership depends only on
ready / read-only / draining, not on the flavor."""

import os
import time

import psycopg2
import pytest

from agentcheck_helpers import (StatSampler, accepting, haproxy_events, max_concurrent_up,
                                servers, wait_server)
import harness
from harness import (FAST_AGENT, HAPROXY_EXAMPLES, Agent, HAProxy, PgServer, free_port,
                     node_section, wait_for)

NODES = ("node1", "node2", "node3")       # priorities 10, 20, 30: node1 preferred
WRITE, READ = "pg_write", "pg_read"
RETURN_DELAY = 3.0
HANDOVER = 1.0                            # > agent-inter (0.2 s) + check time, with margin
AGENT_INTER = 0.2
LEADER_KEYS = {"leader_return_delay": f"{int(RETURN_DELAY * 1000)}ms",
               "leader_handover": f"{int(HANDOVER * 1000)}ms"}


@pytest.fixture(scope="module")
def pgs(module_registry, module_password):
    out = {}
    for name in NODES:
        pg = PgServer(module_registry, name, pglogical=False).init().start()
        pg.create_database("app")
        pg.apply_grants("plain", dbname="app", password=module_password)
        out[name] = pg
    return out


def leader_config(pgs, password, agent_port, http_port):
    sections = [("agent", dict(FAST_AGENT, http_listen=f"127.0.0.1:{http_port}",
                               agent_listen=f"127.0.0.1:{agent_port}", **LEADER_KEYS))]
    for i, name in enumerate(NODES, 1):
        sections.append((f"node.{name}", node_section(pgs[name], password, priority=10 * i)))
    return sections


def start_agent(registry, pgs, password, name):
    http_port, agent_port = free_port(), free_port()
    a = Agent(registry, leader_config(pgs, password, agent_port, http_port), name=name,
              port=http_port)
    a.agent_port = agent_port
    return a.start()


def write_node(agent):
    return agent.status_json()["write_node"]


def wait_leader(agent, name, timeout=10):
    try:
        return wait_for(lambda: write_node(agent) == name, timeout,
                        desc=f"write_node == {name!r}")
    except AssertionError as e:
        raise AssertionError(f"{e}\n--- agent log ---\n{agent.log()[-3000:]}") from None


@pytest.fixture(scope="module")
def agent(module_registry, pgs, module_password):
    a = start_agent(module_registry, pgs, module_password, "agent-central")
    for name in NODES:
        a.wait_state(name, "ready", 10)
    wait_leader(a, "node1")
    return a


@pytest.fixture(scope="module")
def haproxy(module_registry, pgs, agent):
    env = {
        "PGBDR_WRITE_LISTEN": f"127.0.0.1:{free_port()}",
        "PGBDR_READ_LISTEN": f"127.0.0.1:{free_port()}",
        "PGBDR_AGENT_ADDR": "127.0.0.1",
        "PGBDR_AGENT_PORT": str(agent.agent_port),
        "PGBDR_AGENT_INTER": str(int(AGENT_INTER * 1000)),
        "PGBDR_CHECK_INTER": "200",
        "PGBDR_CHECK_RISE": "1",
        "PGBDR_CHECK_FALL": "1",
    }
    for i, name in enumerate(NODES, 1):
        env[f"PGBDR_NODE{i}"] = f"127.0.0.1:{pgs[name].port}"
    h = HAProxy(module_registry, os.path.join(HAPROXY_EXAMPLES, "write-leader.cfg"), env)
    r = h.check_config()
    assert r.returncode == 0, r.stdout + r.stderr
    h.write_port = int(env["PGBDR_WRITE_LISTEN"].rsplit(":", 1)[1])
    return h.start()


@pytest.fixture
def cluster_ok(pgs, agent):
    """Every server running, writable, and node1 leading, before and after."""
    def restore():
        for name, pg in pgs.items():
            if pg.postmaster_pid() is None:
                pg.start()
            if pg.scalar("SHOW default_transaction_read_only") == "on":
                pg.sql("ALTER SYSTEM RESET default_transaction_read_only")
                pg.sql("SELECT pg_reload_conf()")
        for name in NODES:
            agent.wait_state(name, "ready", 10)
        wait_leader(agent, "node1", RETURN_DELAY + HANDOVER + 5)
    restore()
    yield
    restore()


def up_set(haproxy, backend=WRITE):
    return sorted(n for n, row in servers(haproxy, backend).items() if accepting(row))


def write_session(haproxy, password):
    return psycopg2.connect(host="127.0.0.1", port=haproxy.write_port, dbname="app",
                            user="pgbdr_monitor", password=password, connect_timeout=5)


def server_port_via_write(haproxy, password):
    """The PostgreSQL port a new session through the write port reaches."""
    conn = write_session(haproxy, password)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT inet_server_port()")
            return cur.fetchone()[0]
    finally:
        conn.close()


def session_alive(conn):
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            return True
    except psycopg2.Error:
        return False


# --------------------------------------------------------------------------

def test_example_file_is_valid_with_its_defaults():
    import subprocess
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGBDR_")}
    r = subprocess.run([harness.HAPROXY_BIN, "-c", "-f", os.path.join(HAPROXY_EXAMPLES, "write-leader.cfg")],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_failover_and_failback_never_two_write_servers(pgs, agent, haproxy, cluster_ok,
                                                       module_password, record_property):
    port = {name: pg.port for name, pg in pgs.items()}
    for name in NODES:
        want_up = name == "node1"
        wait_server(haproxy, WRITE, name, lambda r, u=want_up: accepting(r) == u
                    and r["agent_status"].lstrip("* ") in ("L7OK", "L7STS"), 10,
                    "UP" if want_up else "DOWN")
    sampler = StatSampler(haproxy, WRITE, period=0.1).start()
    held = None
    try:
        sampler.mark("node1 leads")
        time.sleep(0.6)
        assert server_port_via_write(haproxy, module_password) == port["node1"]
        assert up_set(haproxy, READ) == list(NODES)
        row = haproxy.server(WRITE, "node2")
        assert "not the write leader (leader: node1)" in row["last_agt"], row

        # 1. The leader's PostgreSQL stops: node2 (next priority) takes over.
        sampler.mark("failover")
        pgs["node1"].stop()
        wait_server(haproxy, WRITE, "node2", accepting, 10, "node2 UP")
        sampler.mark("node2 leads")
        assert write_node(agent) == "node2"
        time.sleep(0.6)
        assert server_port_via_write(haproxy, module_password) == port["node2"]
        assert up_set(haproxy, READ) == ["node2", "node3"]
        held = write_session(haproxy, module_password)    # a writer on node2

        # 2. node1 comes back: node2 keeps the role for leader_return_delay.
        sampler.mark("node1 back, waiting")
        pgs["node1"].start()
        agent.wait_state("node1", "ready", 10)
        t_ready = time.monotonic()
        sampler.mark("return delay")
        time.sleep(RETURN_DELAY - 0.5)
        assert write_node(agent) == "node2"

        # 3. ... then hands it back to the preferred node1.
        sampler.mark("failback")
        wait_server(haproxy, WRITE, "node1", accepting, RETURN_DELAY + HANDOVER + 5, "node1 UP")
        t_back = time.monotonic() - t_ready
        sampler.mark("node1 leads again")
        time.sleep(0.6)
        assert server_port_via_write(haproxy, module_password) == port["node1"]
        # on-marked-down shutdown-sessions: the old leader's writers are cut.
        assert not session_alive(held), "a session on the old leader survived the handover"
    finally:
        sampler.stop()
        if held is not None:
            held.close()

    log = sampler.log_text()
    ctx = f"\n--- show stat samples (t phase UP=...) ---\n{log}"
    assert not sampler.errors, sampler.errors
    assert len(sampler.samples) > 50, ctx
    for t, phase, st in sampler.samples:
        assert len(StatSampler.up_servers(st)) <= 1, f"two write servers UP at t={t}{ctx}"
    expect = {"node1 leads": "node1", "node2 leads": "node2", "node1 back, waiting": "node2",
              "return delay": "node2", "node1 leads again": "node1"}
    for t, phase, st in sampler.samples:
        if phase in expect:
            assert StatSampler.up_servers(st) == [expect[phase]], \
                f"t={t} phase {phase!r}: want only {expect[phase]} UP{ctx}"
    assert t_back >= RETURN_DELAY, f"role came back {t_back:.2f}s after node1 was ready{ctx}"

    gaps = sampler.zero_gaps()
    assert [g[2] for g in gaps] == ["failover", "failback"], f"zero-leader gaps {gaps}{ctx}"
    widths = [round(end - start, 2) for start, end, _ in gaps]
    record_property("zero_leader_gaps_s", widths)
    print(f"\nzero-leader gaps (failover, failback): {widths} s; role back "
          f"{t_back:.2f}s after node1 ready")
    # The failback gap is the handover (no old-leader failure involved),
    # within an agent-inter and a sample; nothing lasts past a few seconds.
    assert HANDOVER - AGENT_INTER - 0.15 <= widths[1] <= HANDOVER + 2 * AGENT_INTER + 0.3, \
        f"failback gap {widths[1]}s{ctx}"
    assert max(widths) <= HANDOVER + 2.0, f"gaps {widths}{ctx}"

    # HAProxy's own log of state changes, from start-up (servers start in
    # MAINT: "disabled"): never two write servers UP, event by event.
    events = haproxy_events(haproxy.log(), WRITE)
    assert {s for s, state in events if state == "UP"} == {"node1", "node2"}, events
    most, where = max_concurrent_up(events)
    assert most == 1, f"{most} write servers UP at event {where}: {events}"


def test_two_agents_agree(module_registry, pgs, agent, cluster_ok, module_password):
    """Two agents with one config (as behind two HAProxies) name the same
    leader in every stable phase, and never two different ones."""
    twin = start_agent(module_registry, pgs, module_password, "agent-twin")
    for name in NODES:
        twin.wait_state(name, "ready", 10)
    pair = (agent, twin)
    wait_for(lambda: [write_node(a) for a in pair] == ["node1", "node1"], 10,
             desc="both agents: node1")
    samples = []

    def sample_until(want, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            names = [write_node(a) for a in pair]
            samples.append(names)
            assert len({n for n in names if n}) <= 1, f"agents disagree: {samples}"
            if names == [want, want]:
                return
            time.sleep(0.1)
        raise AssertionError(f"agents did not both reach {want}: {samples}")

    pgs["node1"].stop()
    sample_until("node2", 10)
    for a in pair:
        assert a.status_json()["write_node"] == "node2"
    pgs["node1"].start()
    sample_until("node1", RETURN_DELAY + HANDOVER + 8)
    assert ["node2", "node2"] in samples and ["node1", "node1"] == samples[-1]


def get(agent, path):
    r = agent.get(path)
    return r.status, r.text


def test_write_and_read_endpoints(pgs, agent, cluster_ok):
    st = agent.status_json()
    assert st["write_node"] == "node1" and st["ready_nodes"] == 3, st
    assert st["best_node"] in NODES, st
    by = {n["name"]: n for n in st["nodes"]}
    assert [by[n]["write_leader"] for n in NODES] == [True, False, False], st
    assert all(by[n]["readable"] for n in NODES), st

    # The default node (the first configured) is the leader.
    assert get(agent, "/write")[0] == 200
    assert get(agent, "/read")[0] == 200
    assert get(agent, "/node/node1/write")[0] == 200
    code, body = get(agent, "/node/node2/write")
    assert code == 503 and "not the write leader (leader: node1)" in body, body
    assert get(agent, "/node/node2/read")[0] == 200
    assert get(agent, "/node/node2")[0] == 200
    assert get(agent, "/node/nosuch/write")[0] == 404

    # node3 read-only: not for writes (nor for "/" under read_only = down),
    # still for reads.
    pgs["node3"].sql("ALTER SYSTEM SET default_transaction_read_only = on")
    pgs["node3"].sql("SELECT pg_reload_conf()")
    n3 = agent.wait_state("node3", "down", 5, reason_re="read.?only")
    assert n3["read_only"] is True and n3["readable"] is True and not n3["write_leader"], n3
    assert get(agent, "/node/node3")[0] == 503
    assert get(agent, "/node/node3/read")[0] == 200
    assert get(agent, "/node/node3/write")[0] == 503
    assert agent.status_json()["ready_nodes"] == 2

    # A read-only leader loses the role (after the handover gap).
    pgs["node1"].sql("ALTER SYSTEM SET default_transaction_read_only = on")
    pgs["node1"].sql("SELECT pg_reload_conf()")
    agent.wait_state("node1", "down", 5, reason_re="read.?only")
    wait_leader(agent, "node2", HANDOVER + 3)
    assert get(agent, "/write")[0] == 503
    assert get(agent, "/read")[0] == 200
    assert get(agent, "/node/node2/write")[0] == 200
    st = agent.status_json()
    by = {n["name"]: n for n in st["nodes"]}
    assert [by[n]["write_leader"] for n in NODES] == [False, True, False], st
