"""
PostgreSQL fault injection: every fault takes the node `down` within one
round (interval + timeout, plus a scheduling margin) with a reason that
says why, the node is `ready` again within two intervals (+ margin) of
the fault ending, and that cycle repeated many times leaks neither file
descriptors nor memory. Meanwhile a second, healthy node's answers keep
coming in under 50 ms: no fault may stall the event loop.

Faults: SIGSTOP of every process of a server; SIGKILL of its postmaster
(then a start); a clean restart; a TCP proxy that stalls in the middle
of a query result; a host name that stops resolving (NXDOMAIN, or a DNS
server that does not answer); authentication failure (wrong password,
or pg_hba.conf rejecting the role); max_connections exhausted.

Cycles: PGBDR_FAULT_CYCLES sets the count for every fault. Unset:
- 100 (as the issue asks) for the faults found at connect time, whose
  cycle costs ~0.25-0.4 s: authentication, unresolvable name,
  max_connections;
- 50 for SIGSTOP and the stalled result: they are found only when a
  probe times out, so every cycle waits out interval + timeout (~0.4 s);
  100 of each alone would take 80 s of the 4-minute budget of the two
  fault files;
- 20 for the two that restart PostgreSQL (SIGKILL, clean restart): a
  server start per cycle, 0.3-1.5 s depending on the machine.
The ASan run sets PGBDR_FAULT_CYCLES lower still.

Bounds: down within DOWN_BOUND = interval + timeout + 0.2 s of the fault
starting (the round that meets it starts within one interval), ready
within UP_BOUND = 2 x interval + 0.3 s of the fault ending.

Machine noise. This 2-core gVisor machine now and then stalls every
process for 100-600 ms (then even the healthy server misses a 300 ms
probe), and a fresh connection (TCP, SCRAM, backend start, detect and
probe queries) takes 30-300 ms (the bad server logs its connections).
The Prober watches the machine besides the agent (a control HTTP server
and a 5 ms sleep loop, see fault_tools.Prober). A cycle that misses a
bound while the machine was seen stalling is reported, not failed; of
the others at most max(1, 2 %) may miss a bound, by at most LATE_MAX.
Each answer about the healthy node must be 200 and take under 50 ms; a
stall longer than stale_after (0.5 s) rightly takes even the healthy
node down, so failures and slow answers during or just after a machine
stall are reported, not failed, and a budget of
max(3, 0.1 %) covers the rest (an agent that alone is descheduled).
A loop stall caused by a fault would recur every cycle, far over that.

Setting PGBDR_FAULT_REPORT=FILE appends a timing summary per fault.
"""

import os
import re
import time

import psycopg2
import pytest

from fault_tools import (FakeDns, FaultProxy, Prober, ProcStats, WrappedAgent, binary_uses_asan,
                         can_unshare_mounts, kill_postmaster_only, node_line, report,
                         resolv_conf_prefix, write_hba)
from harness import MONITOR_ROLE, Agent, PgServer, new_password, node_section, wait_for

INTERVAL = 0.1          # [agent] interval: the minimum
TIMEOUT = 0.3           # [agent] timeout
MARGIN = 0.2            # scheduling slack on this 2-core machine
DOWN_BOUND = INTERVAL + TIMEOUT + MARGIN   # the next round starts within one interval
UP_BOUND = 2 * INTERVAL + 0.3               # failing rounds are spaced 2 x interval
HEALTHY_MAX = 0.050     # each answer about the healthy node, connect included
HEALTHY_NOISE = 0.001   # share of answers allowed over HEALTHY_MAX (machine noise)
LATE_SHARE = 0.02       # share of cycles that may miss a bound (machine noise) ...
LATE_MAX = 0.5          # ... by at most this much
RSS_SLACK_KB = 1024     # after warm-up
MAX_CONNECTIONS = 8


def cycles(kind):
    env = os.environ.get("PGBDR_FAULT_CYCLES")
    if env:
        return max(1, int(env))
    return {"cheap": 100, "timeout": 50, "restart": 20}[kind]


def noise_budget(samples):
    return max(3, int(samples * HEALTHY_NOISE))


AGENT_SETTINGS = {"interval": f"{int(INTERVAL * 1000)}ms", "timeout": f"{int(TIMEOUT * 1000)}ms",
                  "rise": 1, "fall": 1,
                  "log_level": os.environ.get("PGBDR_FAULT_LOG_LEVEL", "debug")}


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def good_pg(module_registry, module_password):
    pg = PgServer(module_registry, "good", pglogical=False).init().start()
    pg.create_database("app")
    pg.apply_grants("plain", dbname="app", password=module_password)
    return pg


@pytest.fixture(scope="module")
def bad_pg(module_registry, module_password):
    """The server the faults hit. Few connection slots and none reserved
    for superusers, so that superuser fillers can take every slot the
    (non-superuser) monitoring role could use."""
    pg = PgServer(module_registry, "bad", pglogical=False,
                  extra_conf={"max_connections": MAX_CONNECTIONS,
                              "superuser_reserved_connections": 0,
                              "max_wal_senders": 2, "log_connections": "on"}).init().start()
    pg.create_database("app")
    pg.apply_grants("plain", dbname="app", password=module_password)
    return pg


@pytest.fixture
def healthy_bad_pg(bad_pg, module_password):
    """bad_pg, running, with its normal pg_hba.conf and password, before
    and after each test, whatever the test did to it."""
    def restore():
        bad_pg.resume()
        if bad_pg.postmaster_pid() is None:
            bad_pg.start()
        write_hba(bad_pg, "scram-sha-256")
        bad_pg.sql("SELECT pg_reload_conf()")
        bad_pg.set_password(module_password)
    restore()
    yield bad_pg
    restore()


def make_agent(registry, good_pg, password, target_items, name="agent-faults", cls=Agent, **kw):
    agent = cls(registry, [("agent", dict(AGENT_SETTINGS)),
                           ("node.good", node_section(good_pg, password)),
                           ("node.bad", target_items)], name=name, **kw)
    agent.start()
    agent.wait_state("good", "ready", 10)
    agent.wait_state("bad", "ready", 10)
    return agent


# --------------------------------------------------------------------------
# the cycle driver
# --------------------------------------------------------------------------

def wait_node(agent, state, reason_re, limit):
    """Poll /node/bad until it shows `state` (and a reason matching
    reason_re); returns (monotonic time seen, reason)."""
    deadline = time.monotonic() + limit
    last = None
    while True:
        now = time.monotonic()
        try:
            st, reason = node_line(agent, "bad")
            last = (st, reason)
            if st == state and (reason_re is None or re.search(reason_re, reason, re.I)):
                return now, reason
        except (OSError, AssertionError) as e:
            last = repr(e)
        if now > deadline:
            raise AssertionError(f"node bad not {state} (reason ~ {reason_re}) within {limit}s; "
                                 f"last: {last}\n--- agent log tail ---\n{agent.log()[-2000:]}")
        time.sleep(0.01)


def log_between(agent, start, end):
    """The agent's log lines stamped between two time.time() values."""
    from datetime import datetime, timezone
    out = []
    for line in agent.log().splitlines():
        try:
            t = datetime.strptime(line[:23], "%Y-%m-%dT%H:%M:%S.%f").replace(
                tzinfo=timezone.utc).timestamp()
        except ValueError:
            continue
        if start <= t <= end:
            out.append(line)
    return "\n".join(out[-40:])


def _summary(values):
    v = sorted(values)
    return {"n": len(v), "min": round(v[0], 3), "median": round(v[len(v) // 2], 3),
            "max": round(v[-1], 3)}


def run_cycles(agent, label, n, inject, repair, reason_re):
    """n times: inject() (returns the monotonic time the fault began),
    wait for down with a reason matching reason_re, repair() (returns the
    time the fault ended), wait for ready. Then check the timings, the
    healthy node's answers and the agent's fds and RSS."""
    stats = ProcStats(agent.pid)
    warmup = min(5, max(1, n // 10))
    fd_base = stats.fds()
    rss_base = None
    rss_max = 0
    downs, ups, late, events = [], [], [], []
    prober = Prober(agent, "good", pause=0.02)
    prober.start()
    try:
        for i in range(n):
            events.append((time.monotonic(), f"cycle {i} inject"))
            wall = time.time() - time.monotonic()
            t0 = inject(i)
            seen, reason = wait_node(agent, "down", reason_re, DOWN_BOUND + 5)
            downs.append(seen - t0)
            if seen - t0 > DOWN_BOUND:
                late.append(("down", i, round(seen - t0, 3), reason, wall + t0, wall + seen,
                             seen - t0 - DOWN_BOUND, wall))
            events.append((time.monotonic(), f"cycle {i} repair"))
            t1 = repair(i)
            seen, _ = wait_node(agent, "ready", None, UP_BOUND + 10)
            ups.append(seen - t1)
            if seen - t1 > UP_BOUND:
                late.append(("ready", i, round(seen - t1, 3), "", wall + t1, wall + seen,
                             seen - t1 - UP_BOUND, wall))
            if i == warmup - 1:
                rss_base = stats.rss_kb()
            elif i >= warmup:
                rss_max = max(rss_max, stats.rss_kb())
    finally:
        prober.stop()

    # Both nodes connected and ready again: the same fds as before.
    def fds_back():
        return stats.fds() <= fd_base
    try:
        wait_for(fds_back, 3, desc="agent fd count back to its baseline")
    except AssertionError:
        raise AssertionError(f"{label}: agent fds {stats.fds()} after {n} cycles, "
                             f"{fd_base} before: {sorted(os.listdir(f'/proc/{agent.pid}/fd'))}")
    rss_end = stats.rss_kb()
    late = [x + (prober.machine_stalled(x[4] - x[7], x[5] - x[7]),) for x in late]
    data = {"cycles": n, "down_s": _summary(downs), "ready_s": _summary(ups),
            "healthy": prober.summary(HEALTHY_MAX),
            "fds": [fd_base, stats.fds()], "rss_kb": [rss_base, rss_max, rss_end],
            "late": [x[:3] for x in late],
            "late_in_machine_stalls": [x[:3] for x in late if x[8]]}
    report({"fault": label, **data})
    late = [x for x in late if not x[8]]
    allowed = max(1, int(n * LATE_SHARE))
    too_late = len({x[1] for x in late}) > allowed or any(x[6] > LATE_MAX for x in late)
    worst = max(late, key=lambda x: x[6]) if late else None
    if too_late:
        stage = "ending" if worst[0] == "ready" else "starting"
        raise AssertionError(
            f"{label}: bounds down <= {DOWN_BOUND:.2f}s, ready <= {UP_BOUND:.2f}s (at most "
            f"{allowed} cycles late, by <= {LATE_MAX}s) missed (what, cycle, seconds, reason): "
            f"{[x[:4] for x in late[:10]]} ({data})\n--- agent log from the fault {stage} to "
            f"its detection, cycle {worst[1]} ---\n"
            f"{log_between(agent, worst[4] - 0.05, worst[5] + 0.05)}")
    prober.check(HEALTHY_MAX, noise_budget(len(prober.samples)), events=events)
    if rss_base is not None and n > warmup and not binary_uses_asan():
        assert rss_end <= rss_base + RSS_SLACK_KB and rss_max <= rss_base + 2 * RSS_SLACK_KB, (
            f"{label}: agent RSS grew: {rss_base} kB after {warmup} warm-up cycles, "
            f"max {rss_max} kB, {rss_end} kB after {n} ({data})")
    return data


def monitor_backends(pg):
    return [r[0] for r in pg.sql("SELECT pid FROM pg_stat_activity WHERE usename = %s",
                                 (MONITOR_ROLE,))]


def terminate_monitor(pg, via=None):
    """Send SIGTERM to the agent's backend(s) on pg (without waiting for
    them to exit: pg_terminate_backend's wait polls every 100 ms).
    `via`: an open superuser connection to run it on (else a new one)."""
    q = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s"
    if via is None:
        return pg.sql(q, (MONITOR_ROLE,))
    with via.cursor() as cur:
        cur.execute(q, (MONITOR_ROLE,))
        return cur.fetchall()


def wait_monitor_connected(pg):
    wait_for(lambda: monitor_backends(pg), 5, 0.01, desc="the agent's backend")


# --------------------------------------------------------------------------
# the faults
# --------------------------------------------------------------------------

def test_sigstop(registry, good_pg, healthy_bad_pg, module_password):
    """Every process of the server stopped: the probe on the open
    connection never gets an answer, nor does a new connection."""
    pg = healthy_bad_pg
    agent = make_agent(registry, good_pg, module_password, node_section(pg, module_password))

    def inject(i):
        t0 = time.monotonic()
        pg.pause()
        return t0

    def repair(i):
        t1 = time.monotonic()
        pg.resume()
        return t1

    run_cycles(agent, "sigstop", cycles("timeout"), inject, repair, r"time ?out|timed out")


def test_sigkill_postmaster(registry, good_pg, healthy_bad_pg, module_password):
    """The postmaster SIGKILLed: its backends notice and exit, the agent's
    idle connection is lost and reported at once; then the server is
    started again (crash recovery) and the agent reconnects."""
    pg = healthy_bad_pg
    agent = make_agent(registry, good_pg, module_password, node_section(pg, module_password))

    def inject(i):
        wait_monitor_connected(pg)
        t0 = time.monotonic()
        kill_postmaster_only(pg)
        return t0

    def repair(i):
        pg.start()                  # returns once the server accepts connections
        return time.monotonic()

    run_cycles(agent, "sigkill", cycles("restart"), inject, repair,
               r"connection (lost|failed)|server closed|refused|postmaster")


def test_clean_restart(registry, good_pg, healthy_bad_pg, module_password):
    pg = healthy_bad_pg
    agent = make_agent(registry, good_pg, module_password, node_section(pg, module_password))

    def inject(i):
        wait_monitor_connected(pg)
        t0 = time.monotonic()
        pg.stop("fast")
        return t0

    def repair(i):
        pg.start()
        return time.monotonic()

    run_cycles(agent, "restart", cycles("restart"), inject, repair,
               r"connection (lost|failed)|server closed|terminating|shutting down|refused")


def test_result_stalls_mid_way(registry, good_pg, healthy_bad_pg, module_password):
    """A proxy forwards the startup, then only the first 16 bytes of each
    query result, and holds the rest until the stall ends."""
    pg = healthy_bad_pg
    proxy = registry.add(FaultProxy(pg.port).start())
    items = node_section(pg, module_password)
    items["dsn"] = items["dsn"].replace(f"port={pg.port}", f"port={proxy.port}")
    agent = make_agent(registry, good_pg, module_password, items)

    def inject(i):
        t0 = time.monotonic()
        proxy.stall(budget=16)
        return t0

    def repair(i):
        t1 = time.monotonic()
        proxy.unstall()
        return t1

    run_cycles(agent, "stall", cycles("timeout"), inject, repair, r"time ?out")


def test_auth_failure(registry, good_pg, healthy_bad_pg, module_password):
    """Alternately a wrong password (ALTER ROLE ... PASSWORD, then the
    right one again) and pg_hba.conf rejecting the role (reload, then
    scram-sha-256 again). Either only bites on a new connection, so the
    agent's backend is terminated once the fault is in place."""
    pg = healthy_bad_pg
    agent = make_agent(registry, good_pg, module_password, node_section(pg, module_password))
    wrong = new_password()   # never given to the agent: nothing to leak

    def hba_rejects():
        try:
            psycopg2.connect(pg.tcp_dsn("app", password=module_password), connect_timeout=2).close()
            return False
        except psycopg2.OperationalError as e:
            return "pg_hba.conf rejects" in str(e)

    def inject(i):
        wait_monitor_connected(pg)
        if i % 2 == 0:
            pg.set_password(wrong)
        else:
            write_hba(pg, "reject")
            pg.sql("SELECT pg_reload_conf()")
            wait_for(hba_rejects, 5, 0.01, desc="pg_hba.conf reloaded")
        t0 = time.monotonic()
        terminate_monitor(pg)
        return t0

    def repair(i):
        t1 = time.monotonic()
        if i % 2 == 0:
            pg.set_password(module_password)
        else:
            write_hba(pg, "scram-sha-256")
            pg.sql("SELECT pg_reload_conf()")
        return t1

    run_cycles(agent, "auth", cycles("cheap"), inject, repair,
               r"password authentication failed|pg_hba\.conf rejects")


def test_unresolvable_host_name(registry, good_pg, healthy_bad_pg, module_password):
    """The node's host name stops resolving. The agent runs in a private
    mount namespace whose resolv.conf names a fake DNS server, which
    alternately answers NXDOMAIN and does not answer at all (a dead DNS
    server, one cycle in four: the round's timeout must fire, and the
    other nodes must not wait).
    As with auth, the fault bites on reconnection: the backend is
    terminated once the fault is in place."""
    if not can_unshare_mounts():
        pytest.skip("needs unshare -m and mount --bind (CAP_SYS_ADMIN) to give the agent "
                    "its own resolv.conf")
    pg = healthy_bad_pg
    host = "pgbdr-fault.invalid"
    dns = registry.add(FakeDns(host).start())
    items = node_section(pg, module_password)
    items["dsn"] = items["dsn"].replace("host=127.0.0.1", f"host={host}")
    agent = make_agent(registry, good_pg, module_password, items, cls=WrappedAgent,
                       prefix=resolv_conf_prefix(registry, dns.port))
    assert dns.queries > 0, "the agent did not ask the fake DNS server"

    def inject(i):
        wait_monitor_connected(pg)
        dns.mode = "silent" if i % 4 == 3 else "nxdomain"
        t0 = time.monotonic()
        terminate_monitor(pg)
        return t0

    def repair(i):
        t1 = time.monotonic()
        dns.mode = "ok"
        return t1

    run_cycles(agent, "unresolvable", cycles("cheap"), inject, repair,
               rf"cannot resolve host {re.escape(host)}")


def test_unresolvable_host_name_system_resolver(registry, good_pg, module_password):
    """host = no-such-host.invalid through the machine's own resolver."""
    items = node_section(good_pg, module_password)
    items["dsn"] = items["dsn"].replace("host=127.0.0.1", "host=no-such-host.invalid")
    agent = Agent(registry, [("agent", dict(AGENT_SETTINGS)),
                             ("node.good", node_section(good_pg, module_password)),
                             ("node.bad", items)], name="agent-nxdomain").start()
    agent.wait_state("good", "ready", 10)
    prober = Prober(agent, "good")
    prober.start()
    try:
        n = agent.wait_state("bad", "down", 5, reason_re=r"cannot resolve host no-such-host\.invalid")
        assert n["weight"] == 0
        time.sleep(10 * INTERVAL)
        st, reason = node_line(agent, "bad")
        assert st == "down" and "cannot resolve" in reason, (st, reason)
        assert agent.node("good")["state"] == "ready"
    finally:
        prober.stop()
    prober.check(HEALTHY_MAX, noise_budget(len(prober.samples)))


def test_max_connections_exhausted(registry, good_pg, healthy_bad_pg, module_password):
    """Every connection slot taken. The agent holds a slot itself, so the
    fault is set up as: idle superuser fillers take all slots but one for
    the whole test; per cycle a proxy parks the agent's reconnection, a
    filler takes the free slot, the agent's backend is terminated and
    another filler takes its slot; then the parked reconnection goes on
    and meets "sorry, too many clients already". The fault ends when
    those two fillers go away."""
    pg = healthy_bad_pg
    proxy = registry.add(FaultProxy(pg.port).start())
    items = node_section(pg, module_password)
    items["dsn"] = items["dsn"].replace(f"port={pg.port}", f"port={proxy.port}")
    agent = make_agent(registry, good_pg, module_password, items)
    wait_monitor_connected(pg)
    permanent, extra = [], []

    def fill_one(patience=2.0):
        """A new idle superuser connection; retries while a slot being
        freed by an exiting backend is not free yet."""
        deadline = time.monotonic() + patience
        while True:
            try:
                return pg.connect()
            except psycopg2.OperationalError as e:
                if "too many clients" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.005)

    def monitor_pids():
        with permanent[0].cursor() as cur:
            cur.execute("SELECT pid FROM pg_stat_activity WHERE usename = %s", (MONITOR_ROLE,))
            return [r[0] for r in cur.fetchall()]

    def inject(i):
        wait_for(monitor_pids, 5, 0.01, desc="the agent's backend")
        proxy.hold_new(True)
        extra.append(fill_one())            # the one free slot
        terminate_monitor(pg, via=permanent[0])
        extra.append(fill_one())            # the agent's slot, once its backend has gone
        t0 = time.monotonic()
        proxy.hold_new(False)
        return t0

    def repair(i):
        t1 = time.monotonic()
        while extra:
            extra.pop().close()
        return t1

    try:
        while True:                          # all slots but one
            try:
                permanent.append(pg.connect())
            except psycopg2.OperationalError as e:
                assert "too many clients" in str(e), e
                break
        permanent.pop().close()
        assert permanent, "no slot was free"
        run_cycles(agent, "max_connections", cycles("cheap"), inject, repair,
                   r"too many clients")
    finally:
        proxy.hold_new(False)
        for c in extra + permanent:
            c.close()
