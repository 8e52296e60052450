"""A hung node (every process of its PostgreSQL SIGSTOPped) fails closed
within timeout + interval, and never slows the answers about other nodes:
no request waits on PostgreSQL."""

import os
import threading
import time

import pytest

from harness import Agent, PgServer, node_section, wait_for

INTERVAL = 0.3
TIMEOUT = 1.0
MARGIN = 1.0
MAX_ANSWER = 0.050  # seconds, per request, including connect


@pytest.fixture(scope="module")
def nodes(module_registry, module_password):
    out = []
    for name in ("hung1", "hung2"):
        pg = PgServer(module_registry, name, pglogical=False).init().start()
        pg.create_database("app")
        pg.apply_grants("plain", dbname="app", password=module_password)
        out.append(pg)
    return out


@pytest.fixture(scope="module")
def agent(module_registry, nodes, module_password):
    n1, n2 = nodes
    return Agent(module_registry, [
        ("agent", {"interval": f"{int(INTERVAL * 1000)}ms", "timeout": f"{int(TIMEOUT * 1000)}ms",
                   "rise": 1, "fall": 1, "log_level": "debug"}),
        ("node.node1", node_section(n1, module_password)),
        ("node.node2", node_section(n2, module_password)),
    ], name="agent-hung").start()


def runqueue_wait_ns(pid, tid=None):
    """Nanoseconds the process (all its threads) or one thread spent
    runnable but waiting for a CPU (/proc/.../schedstat, 2nd field)."""
    paths = ([f"/proc/{pid}/task/{tid}/schedstat"] if tid else
             [f"/proc/{pid}/task/{t}/schedstat" for t in os.listdir(f"/proc/{pid}/task")])
    total = 0
    for path in paths:
        try:
            with open(path) as f:
                total += int(f.read().split()[1])
        except (FileNotFoundError, IndexError, ValueError):
            pass
    return total


class Prober(threading.Thread):
    """GET /node/node1 in a loop on fresh connections; records each
    request's wall time and status, and how long the agent and this
    thread waited for a CPU meanwhile: on a loaded machine that wait is
    the machine's, not the agent's (a stall on a hung node is the agent
    sleeping in I/O, which is not run-queue time)."""

    def __init__(self, agent):
        super().__init__(daemon=True)
        self.agent = agent
        # (start monotonic, seconds, status or exception, cpu-wait seconds)
        self.samples = []
        self.halt = threading.Event()

    def run(self):
        tid = threading.get_native_id()
        pid = self.agent.pid
        while not self.halt.is_set():
            w0 = runqueue_wait_ns(pid) + runqueue_wait_ns(os.getpid(), tid)
            t0 = time.monotonic()
            try:
                st = self.agent.get("/node/node1", timeout=2).status
            except Exception as e:  # noqa: BLE001 - recorded as a failure
                st = repr(e)
            t1 = time.monotonic()
            w1 = runqueue_wait_ns(pid) + runqueue_wait_ns(os.getpid(), tid)
            self.samples.append((t0, t1 - t0, st, (w1 - w0) / 1e9))
            time.sleep(0.01)


def test_hung_node_goes_down_and_others_stay_fast(nodes, agent):
    n1, n2 = nodes
    agent.wait_state("node1", "ready", 10)
    agent.wait_state("node2", "ready", 10)

    prober = Prober(agent)
    prober.start()
    try:
        stopped = n2.pause()
        assert len(stopped) > 3  # postmaster and its children
        t_pause = time.monotonic()
        try:
            n = agent.wait_state("node2", "down", TIMEOUT + INTERVAL + MARGIN,
                                 reason_re=r"time.?out|timed out")
            went_down = time.monotonic() - t_pause
            assert n["weight"] == 0
            assert agent.get("/node/node2").status == 503
            # Stay hung a while longer: repeated timeouts and reconnects
            # must not stall the loop either, and node2 must stay down.
            deadline = time.monotonic() + 3 * (TIMEOUT + INTERVAL)
            while time.monotonic() < deadline:
                assert agent.node("node2")["state"] == "down"
                time.sleep(0.1)
        finally:
            n2.resume()
        agent.wait_state("node2", "ready", 15)
    finally:
        prober.halt.set()
        prober.join(5)

    during = [s for s in prober.samples if s[0] >= t_pause]
    assert len(during) > 50, f"too few samples: {len(during)}"
    bad = [s for s in prober.samples if s[2] != 200]
    assert not bad, f"/node/node1 failed during the hang: {bad[:10]}"
    # The claim is about the hang: while node2 is stopped, node1's answers
    # keep coming fast (before it, the test's own start-up may be slow).
    # Each answer's wall time, less the time the agent or the prober sat
    # runnable waiting for a CPU (other load on the machine).
    slow = [(round(s[0] - t_pause, 3), round(s[1] * 1000, 1), round(s[3] * 1000, 1))
            for s in during if s[1] - s[3] > MAX_ANSWER]
    assert not slow, (f"/node/node1 answers over {MAX_ANSWER * 1000:.0f} ms "
                      f"(t since pause s, wall ms, cpu-wait ms): {slow[:20]} "
                      f"of {len(during)}")
    assert went_down <= TIMEOUT + INTERVAL + MARGIN
    assert agent.node("node1")["state"] == "ready"


def monitor_backends(pg):
    return pg.sql("SELECT pid FROM pg_stat_activity WHERE usename = 'pgbdr_monitor'")


def test_one_persistent_connection_per_node(nodes, agent):
    """The agent keeps one connection per node and reuses it: the same
    backend answers probe after probe."""
    for pg, name in zip(nodes, ("node1", "node2")):
        agent.wait_state(name, "ready", 15)
        rows = wait_for(lambda pg=pg: (lambda r: r if len(r) == 1 else False)(monitor_backends(pg)),
                        10, desc=f"exactly one monitor backend on {name}")
        first = agent.node(name)["checked_at"]
        # Several probe rounds later: still that one backend, and newer probes.
        wait_for(lambda name=name, first=first: agent.node(name)["checked_at"] != first, 5,
                 desc="a newer probe")
        deadline = time.monotonic() + 4 * INTERVAL
        while time.monotonic() < deadline:
            assert monitor_backends(pg) == rows, f"{name}: reconnected between probes"
            time.sleep(0.05)


def test_killed_node_goes_down_and_recovers(nodes, agent):
    _, n2 = nodes
    agent.wait_state("node2", "ready", 15)
    n2.kill()
    n = agent.wait_state("node2", "down", TIMEOUT + INTERVAL + MARGIN)
    assert n["reason"] and n["weight"] == 0
    assert agent.get("/node/node2").status == 503
    assert agent.node("node1")["state"] == "ready"
    n2.start()
    agent.wait_state("node2", "ready", 15)
    wait_for(lambda: len(monitor_backends(n2)) == 1, 10, desc="agent reconnected once")


def test_restarted_node_is_reconnected(nodes, agent):
    _, n2 = nodes
    agent.wait_state("node2", "ready", 15)
    before = monitor_backends(n2)
    assert len(before) == 1
    n2.restart()
    n = agent.wait_state("node2", "ready", 15)
    after = wait_for(lambda: (lambda r: r if len(r) == 1 else False)(monitor_backends(n2)), 10,
                     desc="agent reconnected after restart")
    assert after != before
    assert n["checked_at"] is not None
