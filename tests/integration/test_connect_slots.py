"""Connection attempts in flight are bounded ([agent] max_connecting):
a fleet of nodes starting together all come ready at the default
timeout 2s, never more than max_connecting connections are being made
at once (pgbdr_connecting in /metrics), and a node waiting for a slot
is down with a reason saying so, never a stale ready, while a node
holding a slot on a server that never answers times out as usual."""

import re
import signal
import socket
import threading
import time

import pytest

from harness import Agent, PgServer, node_section, wait_for
from test_operations import write_config_text

FLEET = 80
GAUGES = re.compile(rb"^(pgbdr_connecting|pgbdr_connect_waiting) (\d+)$", re.M)


@pytest.fixture(scope="module")
def fleet_pg(module_registry, module_password):
    """One server for the whole fleet: every node is its own connection
    (and its own backend fork and SCRAM exchange) to the same database."""
    pg = PgServer(module_registry, "fleet", pglogical=False,
                  extra_conf={"max_connections": FLEET + 40}).init().start()
    pg.create_database("app")
    pg.apply_grants("plain", dbname="app", password=module_password)
    return pg


@pytest.fixture
def silent_server():
    """Accepts TCP connections (the kernel does) and never says a word:
    a connection attempt to it lasts until the agent's timeout."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    yield s.getsockname()[1]
    s.close()


class GaugeSampler:
    """Reads pgbdr_connecting and pgbdr_connect_waiting from /metrics
    as often as it can, in the background."""

    def __init__(self, agent):
        self.agent = agent
        self.samples = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            try:
                body = self.agent.get("/metrics", timeout=5).body
            except OSError:
                continue
            g = {k.decode(): int(v) for k, v in GAUGES.findall(body)}
            self.samples.append((g["pgbdr_connecting"], g["pgbdr_connect_waiting"]))
            time.sleep(0.01)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)

    def max_connecting(self):
        return max(c for c, _ in self.samples)


def whole_reply(agent, path, keep_alive):
    """One GET read slowly, a few kB at a time: (Content-Length, body length)."""
    conn = "keep-alive" if keep_alive else "close"
    with socket.create_connection(("127.0.0.1", agent.port), timeout=10) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: {conn}\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(4096)
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?im)^content-length: *(\d+)", head).group(1))
        while len(body) < length:
            time.sleep(0.001)
            chunk = s.recv(4096)
            if not chunk:
                break
            body += chunk
    return length, len(body)


def states(agent):
    return {n["name"]: n for n in agent.status_json()["nodes"]}


def test_fleet_comes_ready_within_the_bound(registry, fleet_pg, module_password):
    """80 nodes at once, timeout 2s (the default), at most 4 connecting."""
    sections = [("agent", {"interval": "1s", "timeout": "2s", "max_connecting": 4,
                           "log_level": "info"})]
    sections += [(f"node.n{i:02d}", node_section(fleet_pg, module_password))
                 for i in range(FLEET)]
    a = Agent(registry, sections, name="agent-connect-fleet")
    a.start()
    with GaugeSampler(a) as sampler:
        wait_for(lambda: all(n["state"] == "ready" for n in states(a).values()), 60,
                 interval=0.2, desc=f"all {FLEET} nodes ready")
    assert len(states(a)) == FLEET
    assert len(sampler.samples) > 10, sampler.samples
    assert sampler.max_connecting() <= 4, sampler.samples
    # every node connected once, and no attempt timed out
    backends = fleet_pg.scalar("SELECT count(*) FROM pg_stat_activity"
                               " WHERE application_name = 'pgbdr-agent'")
    assert backends == FLEET, backends
    assert "connect timeout" not in a.log(), a.log()[-3000:]
    # a fleet's /metrics and /status are large: they arrive whole to a
    # slow reader, kept alive or not
    for path in ("/metrics", "/status"):
        for keep_alive in (True, False):
            length, got = whole_reply(a, path, keep_alive)
            assert length > 20000 and got == length, (path, keep_alive, length, got)


def test_waiting_node_is_down_and_says_why(registry, fleet_pg, module_password,
                                           silent_server):
    """One slot, and a node whose server never answers holds it for a
    whole timeout at each attempt: a node that loses its connection
    meanwhile goes down at once and stays down, its reason naming the
    slot, until its turn comes; then it is ready again."""
    sections = [("agent", {"interval": "1s", "timeout": "2s", "max_connecting": 1,
                           "log_level": "info"}),
                ("node.silent", {"dsn": f"host=127.0.0.1 port={silent_server} dbname=app "
                                        f"user=pgbdr_monitor sslmode=disable",
                                 "flavor": "plain"})]
    real = [f"r{i}" for i in range(4)]
    sections += [(f"node.{name}", node_section(fleet_pg, module_password,
                                               application_name=f"slots-{name}"))
                 for name in real]
    a = Agent(registry, sections, name="agent-connect-wait")
    a.start()
    with GaugeSampler(a) as sampler:
        for name in real:
            a.wait_state(name, "ready", 30)
        a.wait_state("silent", "down", 10, reason_re="connect timeout")

        seen = None
        for _ in range(10):
            # drop r0's connection: it must reconnect, and the silent
            # node holds the one slot about two thirds of the time
            fleet_pg.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                         " WHERE application_name = 'slots-r0'")
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and not seen:
                n = states(a)["r0"]
                if re.search(r"waiting for a connection slot", n["reason"] or ""):
                    seen = n
                time.sleep(0.02)
            if seen:
                break
            a.wait_state("r0", "ready", 10)
        assert seen, a.log()[-3000:]
        assert seen["state"] == "down" and seen["weight"] == 0, seen
        assert re.search(r"max_connecting 1", seen["reason"]), seen
        # its turn comes: ready again, and the silent node still times out
        a.wait_state("r0", "ready", 10)
        a.wait_state("silent", "down", 10, reason_re="connect timeout")
    assert sampler.max_connecting() <= 1, sampler.samples
    assert max(w for _, w in sampler.samples) >= 1, sampler.samples


def set_max_connecting(agent, limit):
    """Rewrite the running agent's config with another max_connecting
    and send SIGHUP."""
    text = re.sub(r"(?m)^max_connecting = \d+$", f"max_connecting = {limit}", agent.config_text)
    assert text != agent.config_text, agent.config_text
    write_config_text(agent, text)
    agent.proc.send_signal(signal.SIGHUP)


def test_reload_changes_max_connecting(registry, silent_server):
    """A reload applies a new max_connecting to the attempts that start
    after it, up or down. Every node's server accepts and never answers,
    so each attempt holds its slot for a whole timeout and the gauge
    shows the limit itself."""
    nodes = 24      # far more attempts wanted than any limit below allows
    sections = [("agent", {"interval": "1s", "timeout": "1s", "max_connecting": 2,
                           "log_level": "info"})]
    sections += [(f"node.s{i:02d}", {"dsn": f"host=127.0.0.1 port={silent_server} dbname=app "
                                            f"user=pgbdr_monitor sslmode=disable",
                                     "flavor": "plain"}) for i in range(nodes)]
    a = Agent(registry, sections, name="agent-connect-reload")
    a.start()

    def window(seconds):
        with GaugeSampler(a) as sampler:
            time.sleep(seconds)
        assert len(sampler.samples) > 10, sampler.samples
        return sampler.samples

    def gauges():
        body = a.get("/metrics", timeout=5).body
        return {k.decode(): int(v) for k, v in GAUGES.findall(body)}

    wait_for(lambda: gauges()["pgbdr_connecting"] == 2, 10, interval=0.05,
             desc="2 attempts in flight")
    seen = window(2.5)
    assert max(c for c, _ in seen) == 2 and max(w for _, w in seen) >= 4, seen

    set_max_connecting(a, 6)
    wait_for(lambda: gauges()["pgbdr_connecting"] == 6, 10, interval=0.05,
             desc="6 attempts in flight after the reload")
    seen = window(2.5)
    assert max(c for c, _ in seen) == 6, seen

    # down: the attempts in flight finish (within a timeout), and no new
    # one starts while more than the new limit are in flight
    set_max_connecting(a, 1)
    wait_for(lambda: gauges()["pgbdr_connecting"] <= 1, 10, interval=0.05,
             desc="at most 1 attempt in flight after the second reload")
    seen = window(2.5)
    assert max(c for c, _ in seen) == 1, seen
    assert 'pgbdr_reloads_total{result="ok"} 2' in a.get("/metrics").text
    assert a.proc.poll() is None
