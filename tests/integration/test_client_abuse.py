"""
Client abuse: while abusive clients run, well-behaved ones (HTTP GET
/node/x on a fresh connection as `option httpchk` does, an agent-check
exchange on a fresh connection, a SPOP NOTIFY on a persistent
connection, as HAProxy does each) keep a p99 latency under 10 ms; the
abusive connections are closed after `client_timeout`; afterwards the
agent answers and its fd count is back to its baseline.

The abusers run in a child process (abuse_clients.py) so that this
process, which times the well-behaved requests, keeps its own CPU and
GIL. Abuse: 5,000 idle HTTP connections; slowloris (an unfinished HTTP
request growing by one header byte every 0.5 s, faster than
client_timeout); half-open SPOP connections (HELLO then silence, a
partial frame, a partial HELLO); clients that never read their replies
(SPOP NOTIFY floods, HTTP keep-alive floods). Then the limits:
max_clients per listener, and running out of file descriptors.

Setting PGBDR_FAULT_REPORT=FILE appends the measured latencies.
"""

import resource
import socket
import time

import pytest

import spop_client as sp
from abuse_clients import AbuseClients
from fault_tools import ProcStats, WrappedAgent, binary_uses_asan, http_get, report
from harness import Agent, free_port, node_section, wait_for

CLIENT_TIMEOUT = 1.0    # [agent] client_timeout of the module's agent
P99_MAX = 0.010         # seconds
MEASURE_SECONDS = 3.0
MEASURE_WINDOWS = 3     # windows measured before a p99 over P99_MAX fails
# How long a well-behaved request may wait before it counts as not
# answered. Latency is judged by the p99 bounds, in the plain build; a
# sanitizer makes every frame several times dearer, and while hundreds of
# abusers flood it the agent's loop takes longer than 2 s a turn there
# (seen: the SPOP HELLO of measure() unanswered after 2 s under ASan,
# during the 600-client flood of test_memory_budget). So under a
# sanitizer the wait is longer, and "answered" is what is asserted.
ANSWER_WAIT = 10.0 if binary_uses_asan() else 2.0
IDLE_CONNECTIONS = 5000
IDLE_CLIENT_TIMEOUT = 6.0   # long enough to measure while all 5000 are open
CLOSE_MARGIN = 0.5      # a closing is late after client_timeout + this


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {need}: cannot hold the connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def agent_config(pg, password, **agent_items):
    items = {"interval": "200ms", "timeout": "1s", "rise": 1, "fall": 1, "log_level": "info",
             "client_timeout": f"{int(CLIENT_TIMEOUT * 1000)}ms",
             "agent_listen": f"127.0.0.1:{free_port()}",
             "spoe_listen": f"127.0.0.1:{free_port()}"}
    items.update(agent_items)
    return [("agent", items),
            ("node.x", node_section(pg, password)),
            ("node.y", node_section(pg, password))]


def start_agent(registry, pg, password, name, **agent_items):
    cfg = agent_config(pg, password, **agent_items)
    a = Agent(registry, cfg, name=name)
    a.agent_port = int(cfg[0][1]["agent_listen"].rsplit(":", 1)[1])
    a.spoe_port = int(cfg[0][1]["spoe_listen"].rsplit(":", 1)[1])
    a.start()
    a.wait_state("x", "ready", 15)
    a.wait_state("y", "ready", 15)
    return a


@pytest.fixture(scope="module")
def agent(module_registry, plain_pg, module_password):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))   # the agent inherits it
    return start_agent(module_registry, plain_pg, module_password, "agent-abuse")


# --------------------------------------------------------------------------
# well-behaved clients
# --------------------------------------------------------------------------

def agent_check_once(port, timeout=2.0):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"x\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return data
            data += chunk


def percentile(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * q))] if v else float("nan")


def measure(agent, seconds=MEASURE_SECONDS, label=""):
    """Well-behaved requests in a loop for `seconds`; returns
    {kind: {"n", "p50_ms", "p99_ms", "max_ms"}} plus the agent's peak RSS.
    Any failed request is an AssertionError."""
    times = {"http": [], "agent-check": [], "spop": []}
    stats = ProcStats(agent.pid)
    rss_peak = stats.rss_kb()
    spop = sp.SpopClient(agent.spoe_port, timeout=ANSWER_WAIT).connect()
    try:
        spop.hello(capabilities="pipelining")
        sid = 0
        end = time.monotonic() + seconds
        next_rss = 0
        while time.monotonic() < end:
            t0 = time.perf_counter()
            status, body, _ = http_get(agent.port, "/node/x", timeout=ANSWER_WAIT)
            times["http"].append(time.perf_counter() - t0)
            assert status == 200 and body.startswith("ready x"), (status, body)

            t0 = time.perf_counter()
            line = agent_check_once(agent.agent_port, timeout=ANSWER_WAIT)
            times["agent-check"].append(time.perf_counter() - t0)
            assert line == b"up ready 100%\n", line

            sid += 1
            t0 = time.perf_counter()
            ack = spop.query(sid, 1, [sp.status_message("x")])
            times["spop"].append(time.perf_counter() - t0)
            assert sp.ack_vars(ack)["ready"] is True, ack

            if time.monotonic() >= next_rss:
                rss_peak = max(rss_peak, stats.rss_kb())
                next_rss = time.monotonic() + 0.1
    finally:
        spop.close()
    out = {k: {"n": len(v), "p50_ms": round(percentile(v, 0.5) * 1000, 2),
               "p99_ms": round(percentile(v, 0.99) * 1000, 2),
               "max_ms": round(max(v) * 1000, 2)} for k, v in times.items()}
    out["rss_peak_kb"] = rss_peak
    report({"abuse": label, **out})
    return out


def p99_over(result):
    return {k: v["p99_ms"] for k, v in result.items()
            if isinstance(v, dict) and v["p99_ms"] > P99_MAX * 1000}


def assert_p99(result, label):
    over = p99_over(result)
    assert not over, (f"{label}: p99 over {P99_MAX * 1000:.0f} ms for {over}; all: {result}")


def measure_windows(agent, label, windows=MEASURE_WINDOWS):
    """measure() until a window keeps every p99 under P99_MAX, at most
    `windows` of them (the abuse goes on meanwhile); returns that window,
    or the last, for assert_p99. A starved agent is slow in every window;
    one preemption of this process or of the agent on a shared 2-core
    machine is not (seen: CI's baseline, with no abuse at all, at a SPOP
    p99 of 11.2 ms over 1162 requests, its 12 slowest one hiccup). The
    peak RSS is the highest of all the windows."""
    rss_peak = 0
    for _ in range(windows):
        result = measure(agent, label=label)
        rss_peak = max(rss_peak, result["rss_peak_kb"])
        if not p99_over(result):
            break
    result["rss_peak_kb"] = rss_peak
    return result


def fds_back(agent, baseline, timeout):
    stats = ProcStats(agent.pid)
    try:
        wait_for(lambda: stats.fds() <= baseline, timeout, 0.05,
                 desc=f"agent fds back to {baseline}")
    except AssertionError:
        raise AssertionError(f"agent holds {stats.fds()} fds, baseline {baseline}") from None


def still_serving(agent):
    assert agent.get("/live").status == 200
    st, body, _ = http_get(agent.port, "/node/x")
    assert st == 200, body
    assert agent_check_once(agent.agent_port) == b"up ready 100%\n"
    with sp.SpopClient(agent.spoe_port, timeout=2).connect() as c:
        c.hello()
        assert sp.ack_vars(c.query(1, 1, [sp.status_message("x")]))["ready"] is True


def lifetimes(rep, since="open", idle_kept=False):
    """(seconds each agent-closed connection lived since `since`: "open",
    "sent" (our last byte) or "io" (the last byte either way), seconds
    the ones it had not closed had lived when the abusers stopped).

    idle_kept (SPOP floods): a connection still open counts only if the
    agent had stopped reading it (bytes we sent still unread): that is
    when its output has backed up, and it must then close it. One the
    agent read to the end has had every request answered into our
    buffers and is only idle, which the agent keeps for a SPOP peer
    (HAProxy 3.1+ keeps idle SPOP connections): a connection reopened
    just before the abusers stopped can end that way."""
    start = {"open": lambda c: c[0], "sent": lambda c: c[2],
             "io": lambda c: max(c[2], c[4])}[since]
    closed = [c[1] - start(c) for c in rep["closed"]]
    if idle_kept:
        open_ = [rep["stopped_at"] - last_io for _, last_io, unsent in rep["still_open_io"]
                 if unsent != 0]
    else:
        open_ = [rep["stopped_at"] - t for t in rep["still_open"]]
    return closed, open_


def assert_closed_after_timeout(rep, timeout, label, since="open", early_ok=False,
                                late_after=None, idle_kept=False):
    """late_after: an absolute time by which every connection must have
    been closed, instead of client_timeout + CLOSE_MARGIN after `since`."""
    closed, open_ = lifetimes(rep, since, idle_kept)
    late_open = [round(x, 2) for x in open_ if x > timeout + CLOSE_MARGIN]
    assert not late_open, (f"{label}: {len(late_open)} connections still open "
                           f"{min(late_open)}..{max(late_open)} s after "
                           f"{'connecting' if since == 'open' else 'their last byte'} "
                           f"(client_timeout {timeout}s); the agent closed {len(closed)}")
    if late_after is None:
        late = [round(x, 2) for x in closed if x > timeout + CLOSE_MARGIN]
    else:
        late = [round(c[1] - late_after, 2) for c in rep["closed"] if c[1] > late_after]
    # the client notes its connect time a little after the agent's accept
    early = [round(x, 2) for x in closed if x < timeout - 0.2]
    assert not late, f"{label}: closed late (s): {sorted(late)[-10:]}"
    if not early_ok:
        assert not early, f"{label}: closed before client_timeout (s): {sorted(early)[:10]}"
    assert closed, f"{label}: the agent closed no connection"


# --------------------------------------------------------------------------
# the tests
# --------------------------------------------------------------------------

def test_baseline_latency(agent):
    """No abuse: the reference numbers for everything below."""
    result = measure_windows(agent, "baseline")
    assert_p99(result, "baseline")


def test_5000_idle_http_connections(registry, plain_pg, module_password):
    raise_nofile(IDLE_CONNECTIONS + 1024)
    a = start_agent(registry, plain_pg, module_password, "agent-idle",
                    client_timeout=f"{int(IDLE_CLIENT_TIMEOUT * 1000)}ms")
    stats = ProcStats(a.pid)
    base = stats.fds()
    abusers = AbuseClients(registry, "idle", a.port, IDLE_CONNECTIONS).start()
    # (the baseline may include a short-lived fd or two: a few of slack)
    def all_accepted():
        return stats.fds() >= base + IDLE_CONNECTIONS - 5
    try:
        wait_for(all_accepted, 10, 0.05, desc="the agent to accept every idle connection")
    except AssertionError:
        raise AssertionError(f"the agent holds {stats.fds()} fds, {base} before "
                             f"{IDLE_CONNECTIONS} idle connections") from None
    all_in = time.monotonic()     # the agent had accepted every connection by then
    accept_lag = all_in - abusers.started_at
    result = measure(a, label="5000 idle http")
    assert all_accepted(), f"idle connections closed during the measure: {stats.fds()} fds"
    fds_back(a, base, IDLE_CLIENT_TIMEOUT + 3)
    rep = abusers.stop()
    report({"abuse": "5000 idle http: closing", "accept_lag_s": round(accept_lag, 2),
            "closed": len(rep["closed"]),
            "lived_s": [round(min(c[1] - c[0] for c in rep["closed"]), 2),
                        round(max(c[1] - c[0] for c in rep["closed"]), 2)]})
    assert rep["opened"] == IDLE_CONNECTIONS, rep["errors"]
    assert_p99(result, f"{IDLE_CONNECTIONS} idle HTTP connections")
    # Each is closed client_timeout after the agent accepted it: not
    # before client_timeout after the client connected, and no later
    # than client_timeout after the moment all had been accepted (a
    # burst of 5000 connects queues in the listen backlog a while).
    assert not rep["still_open"], f"{len(rep['still_open'])} idle connections never closed"
    assert_closed_after_timeout(rep, IDLE_CLIENT_TIMEOUT, "idle HTTP",
                                late_after=all_in + IDLE_CLIENT_TIMEOUT + CLOSE_MARGIN)
    still_serving(a)


def test_slowloris(agent):
    """300 unfinished requests, each growing by one header byte every
    0.5 s: a client that never finishes its request must be closed after
    client_timeout, not kept alive by each byte."""
    stats = ProcStats(agent.pid)
    base = stats.fds()
    abusers = AbuseClients(agent.registry, "slowloris", agent.port, 300, period=0.5,
                           reopen=True).start()
    result = measure_windows(agent, "slowloris")
    rep = abusers.stop()
    fds_back(agent, base, CLIENT_TIMEOUT + 3)
    still_serving(agent)
    assert_p99(result, "slowloris")
    assert_closed_after_timeout(rep, CLIENT_TIMEOUT, "slowloris")


def test_half_open_spop(agent):
    """200 SPOP connections that stop talking: after HELLO, in the middle
    of a NOTIFY frame, in the middle of the HELLO. Each gets a
    DISCONNECT (status 2, timeout) and the close, client_timeout after
    its last byte."""
    stats = ProcStats(agent.pid)
    base = stats.fds()
    abusers = AbuseClients(agent.registry, "spop-idle", agent.spoe_port, 200,
                           reopen=True).start()
    result = measure_windows(agent, "half-open spop")
    rep = abusers.stop()
    fds_back(agent, base, CLIENT_TIMEOUT + 3)
    still_serving(agent)
    assert_p99(result, "half-open SPOP")
    assert_closed_after_timeout(rep, CLIENT_TIMEOUT, "half-open SPOP", since="sent")
    details = {c[3] for c in rep["closed"]}
    assert details == {"disconnect 2"}, details


@pytest.mark.parametrize("mode", ["spop-flood", "http-flood"])
def test_client_never_reads(agent, mode):
    """4 clients pipelining requests as fast as they can and never
    reading a reply. The agent must stop reading from them when its
    output backs up (bounded memory), and close them client_timeout
    after their output stopped moving."""
    stats = ProcStats(agent.pid)
    base = stats.fds()
    rss_before = stats.rss_kb()
    port = agent.spoe_port if mode == "spop-flood" else agent.port
    abusers = AbuseClients(agent.registry, mode, port, 4, reopen=True).start()
    result = measure_windows(agent, mode)
    rep = abusers.stop()
    fds_back(agent, base, CLIENT_TIMEOUT + 3)
    still_serving(agent)
    assert_p99(result, mode)
    # The agent stops reading once its replies back up, and closes the
    # connection when its writes have made no progress for
    # client_timeout: measured from the later of the client's last sent
    # byte and the last growth of its unread input.
    assert_closed_after_timeout(rep, CLIENT_TIMEOUT, mode, since="io", early_ok=True,
                                idle_kept=(mode == "spop-flood"))
    growth_mb = (result["rss_peak_kb"] - rss_before) / 1024
    if binary_uses_asan():
        return   # ASan's quarantine holds freed memory: RSS says nothing here
    assert growth_mb < 32, (f"{mode}: agent RSS grew by {growth_mb:.0f} MB while 4 clients "
                            f"flooded it ({rep['sent'] / 1e6:.0f} MB sent): input is not bounded")


# --------------------------------------------------------------------------
# the limits
# --------------------------------------------------------------------------

MAX_CLIENTS = 20


@pytest.fixture(scope="module")
def small_agent(module_registry, plain_pg, module_password):
    return start_agent(module_registry, plain_pg, module_password, "agent-small",
                       max_clients=MAX_CLIENTS, client_timeout="5s")


def closed_at_once(sock, within=0.5):
    """True if the peer closes (or resets) within `within` s sending
    nothing; bytes received are returned instead."""
    sock.settimeout(within)
    try:
        data = sock.recv(4096)
    except socket.timeout:
        return False
    except ConnectionResetError:
        return True
    return True if data == b"" else data


@pytest.mark.parametrize("listener", ["http", "agent-check", "spop"])
def test_max_clients_per_listener(small_agent, listener):
    """max_clients open connections on one listener: the next one is
    closed at once, without a byte; once they go, service resumes."""
    a = small_agent
    port = {"http": a.port, "agent-check": a.agent_port, "spop": a.spoe_port}[listener]
    held = []
    try:
        for _ in range(MAX_CLIENTS):
            held.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        # (agent-check connections that send nothing are answered and
        # closed after agent_send_wait, 500 ms: check before that)
        time.sleep(0.2)
        extra = socket.create_connection(("127.0.0.1", port), timeout=2)
        try:
            outcome = closed_at_once(extra)
        finally:
            extra.close()
        assert outcome is True, (f"{listener}: connection {MAX_CLIENTS + 1} with max_clients = "
                                 f"{MAX_CLIENTS} was not closed at once "
                                 f"({'still open' if outcome is False else outcome!r})")
    finally:
        for s in held:
            s.close()
    wait_for(lambda: http_get(a.port, "/node/x")[0] == 200, 3, desc="service back")
    still_serving(a)


def test_out_of_file_descriptors(registry, plain_pg, module_password):
    """RLIMIT_NOFILE reached (the agent started with a hard limit of 64):
    clients wait in the listen backlog. The loop must not spin on
    accept() meanwhile, must not flood its log, and must serve again
    once connections go away."""
    cfg = agent_config(plain_pg, module_password, client_timeout="3s")
    a = WrappedAgent(registry, cfg, prefix=["prlimit", "--nofile=64:64", "--"], name="agent-nofile")
    a.agent_port = int(cfg[0][1]["agent_listen"].rsplit(":", 1)[1])
    a.spoe_port = int(cfg[0][1]["spoe_listen"].rsplit(":", 1)[1])
    a.start()
    a.wait_state("x", "ready", 15)
    stats = ProcStats(a.pid)
    base = stats.fds()
    log_before = len(a.log().splitlines())
    socks = [socket.create_connection(("127.0.0.1", a.port), timeout=2) for _ in range(100)]
    try:
        time.sleep(0.3)
        cpu0, t0 = stats.cpu_seconds(), time.monotonic()
        time.sleep(1.5)
        cpu_share = (stats.cpu_seconds() - cpu0) / (time.monotonic() - t0)
        log_lines = len(a.log().splitlines()) - log_before
    finally:
        for s in socks:
            s.close()
    fds_back(a, base, 5)
    still_serving(a)
    report({"abuse": "out of fds", "cpu_share": round(cpu_share, 2), "log_lines": log_lines})
    assert cpu_share < 0.2, (f"the agent used {cpu_share:.0%} of a CPU while out of fds "
                             f"(accept() spinning); {log_lines} log lines in ~1.8 s")
    assert log_lines < 20, f"{log_lines} log lines in ~1.8 s while out of fds"
