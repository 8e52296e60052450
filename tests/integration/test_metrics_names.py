"""/metrics under Prometheus' own rules: `promtool check metrics` (from
Debian's prometheus package) accepts it, and the conventions promtool
does not check hold too: fractions are 0-1 `_ratio`s, nothing is a
percent, the start time is the standard `process_start_time_seconds`,
`pgbdr_node_info` carries the flavor, `pgbdr_listener_errors_total`
counts exactly what its help text says, and every listener's counters
(accepted, over max_clients, open) move as connections come and go."""

import os
import re
import shutil
import socket
import subprocess
import time

import pytest

from harness import FAST_AGENT, Agent, HttpError, free_port, node_section, wait_for

PROMTOOL = shutil.which("promtool")


def families(text):
    from prometheus_client.parser import text_string_to_metric_families
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(fams, sample, **labels):
    """A sample's value (counter families drop _total; samples keep it)."""
    for fam in fams.values():
        for s in fam.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    raise KeyError((sample, labels))


@pytest.fixture
def agent(registry, plain_pg, module_password):
    a = Agent(registry, [
        ("agent", dict(FAST_AGENT, agent_listen=f"127.0.0.1:{free_port()}",
                       spoe_listen=f"127.0.0.1:{free_port()}")),
        ("node.n1", node_section(plain_pg, module_password)),
        ("node.gone", {"dsn": f"host=127.0.0.1 port={free_port()} dbname=x user=x",
                       "flavor": "physical"}),
    ], name="metrics-names").start()
    a.wait_state("n1", "ready", 15)
    a.wait_state("gone", "down", 15)
    return a


def test_promtool_accepts_metrics(agent):
    assert PROMTOOL, "promtool missing (Debian package prometheus)"
    text = agent.get("/metrics").text
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.strip() == "" and r.stderr.strip() == "", \
        (r.stdout, r.stderr)


def test_accept_refusals_and_failures_are_exported(agent):
    """Per listener: clients refused within the pollers' file descriptor
    reserve, and accept() failures; both counters, accepted by promtool.
    (test_memory_budget.py's fd reserve test sees the first one count.)"""
    text = agent.get("/metrics").text
    fams = families(text)
    for name in ("pgbdr_listener_fd_reserve_refused_total",
                 "pgbdr_listener_accept_failures_total"):
        fam = fams[name[:-len("_total")]]
        assert fam.type == "counter", fam
        assert {s.labels["listener"] for s in fam.samples} == {"http", "agent-check", "spop"}
        assert all(s.value == 0 for s in fam.samples), fam.samples
    assert PROMTOOL, "promtool missing (Debian package prometheus)"
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.strip() == "" and r.stderr.strip() == "", \
        (r.stdout, r.stderr)


def test_metric_conventions(agent):
    text = agent.get("/metrics").text
    fams = families(text)
    for name, fam in fams.items():
        assert "percent" not in name, name
        if fam.type == "counter":
            assert re.search(r"_total$", fam.samples[0].name), fam.samples[0].name
    assert "pgbdr_uptime_seconds" not in text

    # weight: a 0-1 ratio, matching /status's percent
    status = {n["name"]: n for n in agent.status_json()["nodes"]}
    for node in ("n1", "gone"):
        ratio = value(fams, "pgbdr_node_weight_ratio", node=node)
        assert 0 <= ratio <= 1 and ratio == status[node]["weight"] / 100, (node, ratio)
    assert value(fams, "pgbdr_node_weight_ratio", node="n1") == 1.0

    # info: one sample per node, flavor as a label
    info = {s.labels["node"]: s for s in fams["pgbdr_node_info"].samples}
    assert set(info) == {"n1", "gone"}
    assert info["n1"].labels["flavor"] == "plain" and info["n1"].value == 1
    assert info["gone"].labels["flavor"] == "physical"

    # start time: the process's, from the kernel's own record
    with open(f"/proc/{agent.pid}/stat") as f:
        start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/stat") as f:
        btime = int(next(l for l in f if l.startswith("btime")).split()[1])
    kernel_start = btime + start_ticks / os.sysconf("SC_CLK_TCK")
    start = value(fams, "process_start_time_seconds")
    assert abs(start - kernel_start) < 2, (start, kernel_start)
    assert start <= time.time()


def test_listener_errors_count_what_the_help_says(agent):
    fams = families(agent.get("/metrics").text)
    help_text = fams["pgbdr_listener_errors"].documentation
    assert "4xx" in help_text and "max_clients" in help_text, help_text
    before = value(fams, "pgbdr_listener_errors_total", listener="http")
    ok_before = value(fams, "pgbdr_http_responses_total", listener="http", code="2xx")

    assert agent.get("/no/such/path").status == 404
    assert agent.request_raw(b"garbage\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert agent.get("/live").status == 200

    fams = families(agent.get("/metrics").text)
    assert value(fams, "pgbdr_listener_errors_total", listener="http") == before + 2
    # the good requests in between (/live and the /metrics calls) count nowhere here
    assert value(fams, "pgbdr_http_responses_total", listener="http", code="2xx") >= ok_before + 2


LISTENER_FAMILIES = ("pgbdr_listener_accepted_total", "pgbdr_listener_refused_total",
                     "pgbdr_listener_over_capacity_total",
                     "pgbdr_listener_fd_reserve_refused_total",
                     "pgbdr_listener_accept_failures_total",
                     "pgbdr_listener_setup_failures_total",
                     "pgbdr_listener_connections_total")


def test_every_listener_exports_its_counters(agent):
    """The counters each listener keeps are exported for all three."""
    fams = families(agent.get("/metrics").text)
    for name in LISTENER_FAMILIES:
        fam = fams[name[:-len("_total")]]
        assert fam.type == "counter", fam
        assert {s.labels["listener"] for s in fam.samples} == {"http", "agent-check", "spop"}
    fam = fams["pgbdr_listener_connections_open"]
    assert fam.type == "gauge", fam
    assert {s.labels["listener"] for s in fam.samples} == {"http", "agent-check", "spop"}


MAX_CLIENTS = 2


@pytest.fixture
def small_agent(registry):
    """max_clients = 2 on every listener; no database needed."""
    ports = {"agent-check": free_port(), "spop": free_port()}
    a = Agent(registry, [
        ("agent", dict(FAST_AGENT, agent_listen=f"127.0.0.1:{ports['agent-check']}",
                       spoe_listen=f"127.0.0.1:{ports['spop']}", max_clients=MAX_CLIENTS,
                       client_timeout="5s")),
        ("node.gone", {"dsn": f"host=127.0.0.1 port={free_port()} dbname=x user=x",
                       "flavor": "plain"}),
    ], name="metrics-listeners").start()
    a.wait_state("gone", "down", 15)
    ports["http"] = a.port
    a.listener_ports = ports
    return a


def closed_at_once(sock, within=0.5):
    sock.settimeout(within)
    try:
        return sock.recv(4096) == b""
    except socket.timeout:
        return False
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("listener", ["http", "agent-check", "spop"])
def test_listener_counters_move(small_agent, listener):
    """Connections held up to max_clients count as accepted and open; the
    one past it counts as over capacity, not as accepted; once they go,
    the open gauge comes back down."""
    a = small_agent
    port = a.listener_ports[listener]
    before = families(a.get("/metrics").text)
    held = [socket.create_connection(("127.0.0.1", port), timeout=2)
            for _ in range(MAX_CLIENTS)]
    try:
        # agent-check answers a silent client after agent_send_wait (500 ms)
        time.sleep(0.2)
        extra = socket.create_connection(("127.0.0.1", port), timeout=2)
        try:
            assert closed_at_once(extra), f"{listener}: connection over max_clients kept"
        finally:
            extra.close()
    finally:
        for sock in held:
            sock.close()

    # Each /metrics read is an http connection too: until the held ones
    # are gone, one may itself be closed over max_clients.
    reads = {"served": 0, "closed": 0}

    def settled():
        try:
            text = a.get("/metrics").text
        except (OSError, HttpError):   # closed at once, or reset
            reads["closed"] += 1
            return None
        reads["served"] += 1
        fams = families(text)
        # the /metrics request itself holds one http connection
        mine = 1 if listener == "http" else 0
        return fams if value(fams, "pgbdr_listener_connections_open",
                             listener=listener) == mine else None
    after = wait_for(settled, 5, desc=f"{listener} connections closed")
    http_reads = reads if listener == "http" else {"served": 0, "closed": 0}

    def delta(name):
        return value(after, name, listener=listener) - value(before, name, listener=listener)
    assert delta("pgbdr_listener_accepted_total") == MAX_CLIENTS + http_reads["served"]
    assert delta("pgbdr_listener_over_capacity_total") == 1 + http_reads["closed"]
    assert delta("pgbdr_listener_connections_total") == \
        MAX_CLIENTS + 1 + http_reads["served"] + http_reads["closed"]
    assert delta("pgbdr_listener_refused_total") == 0
    if listener == "spop":
        assert value(after, "pgbdr_spop_refused_total", reason="max_clients") - \
            value(before, "pgbdr_spop_refused_total", reason="max_clients") == 1
