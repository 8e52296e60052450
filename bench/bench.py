#!/usr/bin/python3
"""
The pgbdr-agent benchmark suite; bench/run.sh builds what it needs and
runs this (Debian's python3, for psycopg2). It measures, in ONE run on
this machine, the agent and the classic xinetd checker it replaces, and
judges ratios and bounds only (the machine's cores are shared and noisy:
absolute timings are reported, never asserted across runs).

  1. baseline: xinetd + bench/classic/check.py (a new Python process and
     a new PostgreSQL connection per check)
  2. direct load: bench/loadgen (http, http-ka, agent-check, spop) at
     1, 100 and 1000 clients, and open-loop latency at 100 clients
  3. HAProxy in the loop: bench/spoe_ratio.sh, and 1000 servers checked
     every 100 ms against one agent
  4. PostgreSQL load at 10 and 10,000 checks/s (pg_stat_statements)
  5. cost: RSS with idle connections, CPU per 1000 checks
  6. failover time (bench/failover.py): httpchk, agent-check, SPOE, the
     classic checker and pgsql-check; crash, shutdown, hang, black-hole
  7. fleet scale (bench/fleet.py): one agent, 100 / 300 / 1000 nodes

Writes bench/RESULTS.md (its own sections between markers; every other
"## " section, such as the SPOE ratio spoe_ratio.sh writes, kept as it is;
a History section with every run's summary) and prints
PASS/FAIL per target. Exit status 0 when every target passes, 1 if one
fails, 2 on an error.

Environment: PGBDR_AGENT (agent binary), LOADGEN (loadgen binary),
BENCH_QUICK=1 (shorter runs, 3 faults per type, fleets of 100 and 300;
RESULTS.md says so),
BENCH_PHASES=classic,haproxy_1000 (debugging: only these methods of Bench;
nothing judged or recorded).
"""

import datetime
import json
import os
import platform
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import failover  # noqa: E402
import fleet  # noqa: E402
from harness import (FIXTURES_DIR, Agent, PgServer, Registry, free_port,  # noqa: E402
                     new_password, wait_for)

AGENT_BIN = os.path.abspath(os.environ.get("PGBDR_AGENT", os.path.join(ROOT, "build", "agent", "pgbdr-agent")))
LOADGEN = os.path.abspath(os.environ.get("LOADGEN", os.path.join(ROOT, "build-bench", "loadgen")))
NULLSERVER = os.path.join(os.path.dirname(LOADGEN), "nullserver")
RESULTS = os.path.join(BENCH, "RESULTS.md")
QUICK = os.environ.get("BENCH_QUICK") == "1"
# bench/run.sh writes its own sections between these markers, and keeps
# every other "## " section (other scripts', other engineers') as it is
BEGIN_MARK = "<!-- bench/run.sh: begin (rewritten by each run) -->"
END_MARK = "<!-- bench/run.sh: end -->"
FAILOVER_FAULTS = 3 if QUICK else 20   # per fault type

# durations (seconds)
RUN_S = 1.5 if QUICK else 3.0          # one direct-load run
WARM_S = 0.5
LAT_S = 2.0 if QUICK else 3.5          # one open-loop latency run
PG_WINDOW_S = 4.0 if QUICK else 8.0    # one PostgreSQL-load window
HAPROXY_WINDOW_S = 5.0 if QUICK else 10.0
HAPROXY_NULL_WINDOW_S = 4.0 if QUICK else 6.0
CLASSIC_S = 3.0 if QUICK else 5.0
CLASSIC_WARM_S = 2.0
CLASSIC_CLIENTS = (1, 10, 30)
SPOE_ARGS = ["2", "1"] if QUICK else ["5", "3"]

# the agent's probe interval: the default (1s) for every phase but the
# PostgreSQL-load one, which uses 100ms (10 probes/s, enough to count a
# window's probes to 1%)
AGENT_INTERVAL = os.environ.get("BENCH_AGENT_INTERVAL", "1s")
PG_AGENT_INTERVAL = "100ms"
HIGH_RATE = 10000                      # checks/s
LOW_RATE = 10
# open-loop rates for the latency runs at 100 clients: 100 clients each
# checking every 100 ms (the p99 target), and every 10 ms (the 10,000/s
# of 1000 HAProxy servers at inter 100 ms, on 100 connections)
LAT_RATES = (1000, 10000)
LAT_TARGET_RATE = 1000
LAT_ROUNDS = 3          # at the target rate; the p99 judged is the median of the rounds
LAT_CLIENTS = 100

CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(msg, flush=True)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def loadgen(*args, timeout=120):
    cmd = [LOADGEN] + [str(a) for a in args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr}")
    lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
    return json.loads(lines[-1])


def agent_send(mode):
    """loadgen's arguments for an agent-check client that sends what
    HAProxy sends with the shipped agent-check.cfg (agent-send "\\n": the
    agent's own node, answered at once). A client that sends nothing is
    answered only after agent_send_wait (500 ms), as HAProxy without
    agent-send would be."""
    return ("-s", "\n") if mode == "agent" else ()


def proc_cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])   # utime + stime


def tree_cpu_ticks(pid):
    """utime+stime of pid and of its children it has reaped (cutime+cstime):
    xinetd reaps the check scripts, the postmaster the backends."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15])


def memory_kb(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0])
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k == "Pss":
                out["Pss"] = int(v.split()[0])
    return out


def rss_by_mapping(pid, top=8):
    """The biggest resident mappings (kB), from /proc/PID/smaps."""
    rows = {}
    name = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if parts and "-" in parts[0] and not parts[0].endswith(":"):
                name = os.path.basename(parts[5]) if len(parts) > 5 else "[anonymous]"
            elif parts and parts[0] == "Rss:":
                rows[name] = rows.get(name, 0) + int(parts[1])
    return sorted(rows.items(), key=lambda kv: -kv[1])[:top]


def vm_rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def http_get(port, path, timeout=5):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                if data:
                    break     # the classic checker resets after its reply
                raise
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode("utf-8", "replace")


def metric(port, name, labels=""):
    _, body = http_get(port, "/metrics")
    for line in body.splitlines():
        if line.startswith(name + labels + " ") or (not labels and line.startswith(name + " ")):
            return float(line.rsplit(" ", 1)[1])
    raise KeyError(f"{name}{labels} not in /metrics")


def fmt_int(v):
    return f"{v:,.0f}"


def fmt_us(v):
    if v >= 10000:
        return f"{v / 1000:,.0f} ms"
    if v >= 1000:
        return f"{v / 1000:.2f} ms"
    return f"{v:.0f} µs"


def median(values):
    v = sorted(values)
    if not v:
        return 0.0
    mid = len(v) // 2
    return v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2


def pct_diff(a, b):
    return abs(a - b) / max(a, b) * 100 if max(a, b) > 0 else 0.0


def own_title(title):
    """The "## " sections bench.py writes itself."""
    return title in ("Summary", "History") or re.match(r"\d+\. ", title) is not None


def foreign_sections(text):
    """[(title, text)] of every "## " section of RESULTS.md that bench.py
    does not write, in file order, markers removed."""
    out = []
    cur = None
    for line in text.splitlines(keepends=True):
        if line.startswith("## "):
            cur = [line[3:].strip(), line]
            out.append(cur)
        elif line.startswith("<!-- bench/run.sh:") or line.startswith("# Benchmark results"):
            cur = None
        elif cur is not None:
            cur[1] += line
    return [(t, body) for t, body in out if not own_title(t)]


def machine_description():
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    want = ("Model name", "CPU(s)", "Thread(s) per core", "Hypervisor vendor", "L2 cache", "L3 cache")
    rows = []
    for line in lscpu.splitlines():
        k, _, v = line.partition(":")
        if k.strip() in want:
            rows.append(f"{k.strip()}: {v.strip()}")
    mem = ""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB RAM"
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    load = open("/proc/loadavg").read().split()[:3]
    return (f"nproc {nproc}; " + "; ".join(rows) + f"; {mem}; Linux {platform.release()}; "
            f"load average at start {' '.join(load)} (other tenants share these cores)")


def versions():
    out = {}
    out["haproxy"] = subprocess.run(["haproxy", "-v"], capture_output=True, text=True).stdout.split()[2]
    xv = subprocess.run(["xinetd", "-version"], capture_output=True, text=True)
    out["xinetd"] = "xinetd " + (xv.stderr or xv.stdout).strip().split("\n")[0].split()[0]
    out["agent"] = subprocess.run([AGENT_BIN, "--version"], capture_output=True,
                                  text=True).stdout.strip()
    return out


# ---------------------------------------------------------------------------
# setup: one PostgreSQL with the BDR 1/2 emulation, and the agent
# ---------------------------------------------------------------------------

class Bench:
    def __init__(self):
        self.reg = Registry()
        self.hostname = socket.gethostname()
        self.results = {}
        self.summary = []     # (target, measured, goal, ok or None)
        # RESULTS.md as it was before this run (spoe_ratio.sh rewrites its section)
        self.old_results = open(RESULTS).read() if os.path.exists(RESULTS) else ""

    # -- PostgreSQL -----------------------------------------------------------
    def start_pg(self):
        log("== PostgreSQL 15 with the BDR 1/2 catalog emulation")
        self.pg = PgServer(self.reg, "bench", pglogical=False, extra_conf={
            "shared_preload_libraries": "'pg_stat_statements'",
            "pg_stat_statements.track": "top",
            "pg_stat_statements.track_planning": "on",
            "max_connections": 300,
        })
        self.pg.init()
        self.pg.start()
        self.pg.create_database("suppliers")
        self.pg.run_file(os.path.join(FIXTURES_DIR, "bdr1_emulation.sql"), dbname="suppliers")
        # the classic query looks for the machine's host name
        self.pg.sql("SELECT bdr.emulation_setup(%s)", (self.hostname,), dbname="suppliers")
        self.monitor_pw = new_password()
        self.pg.apply_grants("bdr", dbname="suppliers", password=self.monitor_pw)
        self.super_pw = new_password()
        self.pg.set_password(self.super_pw, role="postgres")
        self.pg.sql("CREATE EXTENSION pg_stat_statements")
        self.suppliers_oid = self.pg.scalar(
            "SELECT oid FROM pg_database WHERE datname = 'suppliers'")

    def pg_counters(self):
        """Statements run in the suppliers database, from pg_stat_statements
        (exact, updated at once), split by role: the agent's monitoring role
        and the classic checker's superuser; plus pg_stat_database's commits
        and sessions. Read from the postgres database, which is not counted."""
        agent_calls, other_calls = self.pg.sql(
            "SELECT coalesce(sum(calls) FILTER (WHERE userid = 'pgbdr_monitor'::regrole), 0)::bigint,"
            " coalesce(sum(calls) FILTER (WHERE userid <> 'pgbdr_monitor'::regrole), 0)::bigint"
            " FROM pg_stat_statements WHERE dbid = %s", (self.suppliers_oid,))[0]
        xact, sessions = self.pg.sql(
            "SELECT xact_commit, sessions FROM pg_stat_database WHERE datname = 'suppliers'")[0]
        return {"calls": int(agent_calls), "other_calls": int(other_calls),
                "xact_commit": int(xact), "sessions": int(sessions), "t": time.monotonic()}

    def pg_classic_backends(self):
        return self.pg.scalar("SELECT count(*) FROM pg_stat_activity"
                              " WHERE datname = 'suppliers' AND usename = 'postgres'")

    def pg_backends(self):
        return self.pg.scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = 'suppliers'")

    # -- agent ----------------------------------------------------------------
    def start_agent(self, interval=None):
        interval = interval or AGENT_INTERVAL
        log(f"== pgbdr-agent (interval {interval})")
        self.http_port, self.agent_port, self.spoe_port = free_port(), free_port(), free_port()
        os.environ["PGBDR_AGENT"] = AGENT_BIN
        self.agent = Agent(self.reg, [
            ("agent", {
                "http_listen": f"127.0.0.1:{self.http_port}",
                "agent_listen": f"127.0.0.1:{self.agent_port}",
                "spoe_listen": f"127.0.0.1:{self.spoe_port}",
                "interval": interval,
                "log_level": "warning",
                # idle connections held for the RSS measurement stay open
                "client_timeout": "120s",
            }),
            ("postgresql", {
                "host": "127.0.0.1", "port": self.pg.port, "database": "suppliers",
                "user": "pgbdr_monitor", "password": self.monitor_pw,
            }),
        ], port=self.http_port)
        self.agent.start()
        self.agent.wait_state(self.hostname, "ready", 20)
        assert http_get(self.http_port, "/")[0] == 200
        self.agent_pid = self.agent.pid

    # -- 5a. memory -------------------------------------------------------------
    def measure_rss(self):
        log("== RSS with idle client connections (fresh agent, before any load)")
        m = memory_kb(self.agent_pid)
        rows = [{"kind": "none", "connections": 0, "rss_kb": m["VmRSS"], "mem": m,
                 "closed_while_held": 0}]
        for mode, port, what in (("http-ka", self.http_port, "HTTP keep-alive, after one request"),
                                 ("spop", self.spoe_port, "SPOP, after HELLO")):
            for n in (1, 100, 1000):
                p = subprocess.Popen([LOADGEN, "-m", mode, "-p", str(port), "-c", str(n),
                                      "-H", "-d", "60"], stdout=subprocess.PIPE, text=True)
                ready, _, _ = select.select([p.stdout], [], [], 30)
                line = p.stdout.readline() if ready else ""
                if not line.startswith('{"ready"'):
                    p.kill()
                    raise RuntimeError(f"loadgen hold {mode} {n}: {line!r}")
                time.sleep(0.3)
                mem = memory_kb(self.agent_pid)
                rss = mem["VmRSS"]
                if mode == "http-ka" and n == 1000:
                    self.results["rss_top"] = rss_by_mapping(self.agent_pid)
                p.send_signal(signal.SIGTERM)
                out, _ = p.communicate(timeout=10)
                res = json.loads(out.strip().splitlines()[-1])
                rows.append({"kind": what, "mode": mode, "connections": n, "rss_kb": rss, "mem": mem,
                             "closed_while_held": res["closed_while_held"]})
                log(f"   {what:36s} {n:5d} connections: VmRSS {rss / 1024:.1f} MB "
                    f"(anon {mem['RssAnon'] / 1024:.1f}, file {mem['RssFile'] / 1024:.1f}, "
                    f"PSS {mem['Pss'] / 1024:.1f})")
                time.sleep(0.3)
        self.results["rss"] = rows

    # -- 2. direct load -----------------------------------------------------------
    def start_null_servers(self):
        """The control: bench/nullserver.c answering the same exchanges
        (http, agent-check) with nothing behind them."""
        self.null_ports = {"http": free_port(), "agent": free_port()}
        self.null_procs = []
        for mode, port in self.null_ports.items():
            p = subprocess.Popen([NULLSERVER, "-m", "http" if mode == "http" else "line",
                                  "-p", str(port)], stdout=subprocess.PIPE, text=True)
            self.null_procs.append(p)
        for port in self.null_ports.values():
            wait_for(lambda: socket.create_connection(("127.0.0.1", port), 1).close() or True,
                     10, desc="nullserver listening")

    def stop_null_servers(self):
        for p in self.null_procs:
            p.terminate()
            p.wait(10)

    def null_run(self, mode, *args):
        r = loadgen("-m", mode, "-p", self.null_ports[mode], *args)
        r["server"] = "nullserver"
        return r

    def direct_load(self):
        self.start_null_servers()
        try:
            self._direct_load()
        finally:
            self.stop_null_servers()

    def _direct_load(self):
        log("== direct load (loadgen, closed loop)")
        runs = []
        nulls = []
        plan = []
        for c in (1, 100, 1000):
            plan += [("http", self.http_port, c, 1), ("http-ka", self.http_port, c, 1),
                     ("agent", self.agent_port, c, 1), ("spop", self.spoe_port, c, 1)]
        plan += [("spop", self.spoe_port, 1, 20), ("spop", self.spoe_port, 10, 20)]
        for mode, port, c, depth in plan:
            if mode in ("http", "agent") and c in (1, 100):
                # the control first: this machine's ceiling for the exchange
                n = self.null_run(mode, "-c", c, "-d", RUN_S, "-w", WARM_S)
                nulls.append(n)
                log(f"   {mode:8s} c={c:<5d} nullserver {n['throughput']:>10,.0f}/s  "
                    f"p50 {fmt_us(n['p50_us']):>8s}  p99 {fmt_us(n['p99_us']):>8s}")
            before = proc_cpu_ticks(self.agent_pid)
            r = loadgen("-m", mode, "-p", port, "-c", c, "-n", depth, "-d", RUN_S, "-w", WARM_S,
                        *agent_send(mode))
            after = proc_cpu_ticks(self.agent_pid)
            self.cpu_per_1000(r, after - before)
            runs.append(r)
            log(f"   {mode:8s} c={c:<5d} depth={depth:<3d} {r['throughput']:>10,.0f}/s  "
                f"p50 {fmt_us(r['p50_us']):>8s}  p99 {fmt_us(r['p99_us']):>8s}  "
                f"p99.9 {fmt_us(r['p999_us']):>8s}  errors {r['errors']}  "
                f"cpu {r['agent_cpu_ms_per_1000'] or 0:.0f} ms/1000")
            if r["errors"] or r["not_ok"]:
                log(f"   !! {r['errors']} errors, {r['not_ok']} not-ok replies")
        self.results["direct"] = runs
        self.results["null_direct"] = nulls

        lat = []
        for rate in LAT_RATES:
            rounds = LAT_ROUNDS if rate == LAT_TARGET_RATE else 1
            log(f"== latency at {LAT_CLIENTS} clients, open loop, {rate:,} checks/s in total, "
                f"{rounds} round(s)")
            for rnd, mode, port in [(i + 1, m, p) for i in range(rounds) for m, p in
                                    (("http", self.http_port), ("agent", self.agent_port),
                                     ("spop", self.spoe_port))]:
                if mode in self.null_ports:
                    n = self.null_run(mode, "-c", LAT_CLIENTS, "-r", rate, "-d", LAT_S,
                                      "-w", WARM_S)
                    n["agent_cpu_ms_per_1000"] = 0.0
                    n["round"] = rnd
                    lat.append(n)
                    log(f"   {mode:8s} nullserver {n['throughput']:>8,.0f}/s  "
                        f"p50 {fmt_us(n['p50_us'])}  p99 {fmt_us(n['p99_us'])}  "
                        f"p99.9 {fmt_us(n['p999_us'])}")
                before = proc_cpu_ticks(self.agent_pid)
                r = loadgen("-m", mode, "-p", port, "-c", LAT_CLIENTS, "-r", rate,
                            "-d", LAT_S, "-w", WARM_S, *agent_send(mode))
                after = proc_cpu_ticks(self.agent_pid)
                self.cpu_per_1000(r, after - before)
                r["round"] = rnd
                lat.append(r)
                log(f"   {mode:8s} {r['throughput']:>8,.0f}/s  p50 {fmt_us(r['p50_us'])}  "
                    f"p99 {fmt_us(r['p99_us'])}  p99.9 {fmt_us(r['p999_us'])}  "
                    f"max {fmt_us(r['max_us'])}  errors {r['errors']}")
        self.results["latency"] = lat

    @staticmethod
    def cpu_per_1000(r, ticks):
        """The agent's CPU (utime+stime ticks over the whole loadgen run,
        warm-up included) per 1000 of the checks answered in that run."""
        n = r["all_requests"]
        r["agent_cpu_ms"] = ticks / CLK_TCK * 1000
        r["agent_cpu_ms_per_1000"] = r["agent_cpu_ms"] / n * 1000 if n else 0.0

    # -- 4. PostgreSQL load --------------------------------------------------------
    def pg_load(self):
        # an agent of its own, probing every 100 ms, alone on the database
        self.agent.stop()
        self.start_agent(PG_AGENT_INTERVAL)
        log("== PostgreSQL load at 10 and 10,000 checks/s (HTTP keep-alive checks)")
        self.pg.sql("SELECT pg_stat_statements_reset()")
        rows = []
        for rate, clients in ((LOW_RATE, 1), (HIGH_RATE, 100)):
            backends = self.pg_backends()
            c0 = self.pg_counters()
            r = loadgen("-m", "http-ka", "-p", self.http_port, "-c", clients, "-r", rate,
                        "-d", PG_WINDOW_S, "-w", 0, timeout=PG_WINDOW_S + 60)
            c1 = self.pg_counters()
            dt = c1["t"] - c0["t"]
            row = {"label": f"loadgen, {clients} keep-alive client(s)", "rate_target": rate,
                   "checks_per_s": r["throughput"], "window_s": dt,
                   "statements": c1["calls"] - c0["calls"],
                   "statements_per_s": (c1["calls"] - c0["calls"]) / dt,
                   "xact_per_s": (c1["xact_commit"] - c0["xact_commit"]) / dt,
                   "sessions": c1["sessions"] - c0["sessions"],
                   "backends": backends, "p99_us": r["p99_us"], "errors": r["errors"]}
            rows.append(row)
            log(f"   {r['throughput']:>8,.0f} checks/s -> {row['statements_per_s']:.2f} "
                f"statements/s in PostgreSQL ({row['statements']} in {dt:.1f} s), "
                f"new sessions {row['sessions']}, agent backends {backends}")
        self.results["pg"] = rows
        # what one probe costs PostgreSQL: the agent's statement(s), planning included
        self.results["pg_probe"] = self.pg.sql(
            "SELECT calls, round(mean_plan_time::numeric, 3), round(mean_exec_time::numeric, 3),"
            " left(regexp_replace(query, '\\s+', ' ', 'g'), 60)"
            " FROM pg_stat_statements WHERE userid = 'pgbdr_monitor'::regrole AND dbid = %s"
            " ORDER BY calls DESC LIMIT 3", (self.suppliers_oid,))
        self.agent.stop()

    # -- 3b. HAProxy with 1000 servers --------------------------------------------
    def haproxy_1000(self):
        log("== HAProxy: 1000 servers, option httpchk, inter 100 ms, against one agent")
        self.results["haproxy1000"] = self._haproxy_1000(
            self.http_port, HAPROXY_WINDOW_S, self.agent_http_count, with_pg=True)
        log("   control: the same HAProxy config against nullserver")
        self.start_null_servers()
        try:
            self.results["haproxy1000_null"] = self._haproxy_1000(
                self.null_ports["http"], HAPROXY_NULL_WINDOW_S, self.null_http_count)
        finally:
            self.stop_null_servers()

    def agent_http_count(self):
        # minus our own /metrics request
        return metric(self.http_port, "pgbdr_listener_requests_total", '{listener="http"}') - 1

    def null_http_count(self):
        p = self.null_procs[0]
        p.send_signal(signal.SIGUSR1)
        return int(p.stdout.readline())

    def _haproxy_1000(self, port, window, count, with_pg=False):
        base = self.reg.mkdtemp("haproxy1000")
        sock = os.path.join(base, "stats.sock")
        cfg = os.path.join(base, "haproxy.cfg")
        lines = [
            "global",
            "    maxconn 4000",
            f"    stats socket {sock} mode 600 level admin",
            "defaults",
            "    mode tcp",
            "    timeout connect 1s",
            "    timeout client 30s",
            "    timeout server 30s",
            "    timeout check 1s",
            "backend pg_1000",
            "    mode tcp",
            "    balance leastconn",
            "    option httpchk",
            "    http-check expect status 200",
            "    default-server rise 2 fall 2",
        ]
        for i in range(1, 1001):
            lines.append(f"    server s{i} 127.0.0.1:{self.pg.port} check port {port} inter 100")
        with open(cfg, "w") as f:
            f.write("\n".join(lines) + "\n")
        logf = open(os.path.join(base, "haproxy.log"), "w")
        hp = subprocess.Popen(["haproxy", "-f", cfg, "-db"], stdout=logf, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: os.path.exists(sock), 10, desc="haproxy stats socket")
            time.sleep(2.0)   # every server has been checked a few times
            m0 = count()
            pg0 = self.pg_counters()
            t0 = time.monotonic()
            before = proc_cpu_ticks(self.agent_pid)
            hp_before = proc_cpu_ticks(hp.pid)
            samples = []
            end = t0 + window
            while time.monotonic() < end:
                time.sleep(min(2.0, max(0, end - time.monotonic())))
                samples.append(self.show_stat(sock))
            m1 = count()
            t1 = time.monotonic()
            after = proc_cpu_ticks(self.agent_pid)
            hp_after = proc_cpu_ticks(hp.pid)
            pg1 = self.pg_counters()
            checks = m1 - m0
            final = samples[-1]
            min_up = min(s["up"] for s in samples)
            row = {"servers": 1000, "inter_ms": 100, "window_s": t1 - t0,
                   "checks": checks, "checks_per_s": checks / (t1 - t0),
                   "expected_per_s": 10000, "min_up": min_up, "final": final,
                   "samples": len(samples),
                   "agent_cpu_pct": (after - before) / CLK_TCK / (t1 - t0) * 100,
                   "haproxy_cpu_pct": (hp_after - hp_before) / CLK_TCK / (t1 - t0) * 100}
            if with_pg:
                dtp = pg1["t"] - pg0["t"]
                self.results["pg_haproxy"] = ({
                    "label": "HAProxy, 1000 servers (new connection per check)",
                    "rate_target": HIGH_RATE, "checks_per_s": row["checks_per_s"],
                    "window_s": dtp, "statements": pg1["calls"] - pg0["calls"],
                    "statements_per_s": (pg1["calls"] - pg0["calls"]) / dtp,
                    "xact_per_s": (pg1["xact_commit"] - pg0["xact_commit"]) / dtp,
                    "sessions": pg1["sessions"] - pg0["sessions"],
                    "backends": self.pg_backends(), "p99_us": None, "errors": 0})
                self.results["pg_haproxy"]["label"] += f", agent interval {AGENT_INTERVAL}"
            log(f"   served {row['checks_per_s']:,.0f} checks/s (expected 10,000/s); "
                f"UP: min {min_up}/1000 over {len(samples)} samples, final {final['up']}; "
                f"down transitions {final['chkdown']}; CPU: agent {row['agent_cpu_pct']:.0f}%, "
                f"HAProxy {row['haproxy_cpu_pct']:.0f}%; last check duration p50 "
                f"{final['check_ms_p50']} ms, max {final['check_ms_max']} ms")
            return row
        finally:
            hp.terminate()
            try:
                hp.wait(10)
            except subprocess.TimeoutExpired:
                hp.kill()
                hp.wait()
            logf.close()

    @staticmethod
    def show_stat(sock):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(5)
        s.connect(sock)
        s.sendall(b"show stat\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        lines = data.decode().splitlines()
        hdr = lines[0].lstrip("# ").split(",")
        up = down = other = chkdown = 0
        durations = []
        statuses = {}
        for line in lines[1:]:
            if not line:
                continue
            row = dict(zip(hdr, line.split(",")))
            if row.get("svname") in ("FRONTEND", "BACKEND"):
                continue
            st = row.get("status", "")
            statuses[st] = statuses.get(st, 0) + 1
            if st.startswith("UP"):
                up += 1
            elif st.startswith("DOWN"):
                down += 1
            else:
                other += 1
            chkdown += int(row.get("chkdown") or 0)
            if row.get("check_duration"):
                durations.append(int(row["check_duration"]))
        durations.sort()
        return {"up": up, "down": down, "other": other, "chkdown": chkdown, "statuses": statuses,
                "check_ms_p50": durations[len(durations) // 2] if durations else None,
                "check_ms_max": durations[-1] if durations else None}

    # -- 1. the classic checker ------------------------------------------------------
    def classic(self):
        log("== baseline: xinetd + classic check.py (new process and connection per check)")
        base = self.reg.mkdtemp("classic")
        port = free_port()
        ini = os.path.join(base, "database.ini")
        with open(ini, "w") as f:
            f.write("[postgresql]\nhost=127.0.0.1\n"
                    f"port={self.pg.port}\ndatabase=suppliers\nuser=postgres\n"
                    f"password={self.super_pw}\n")
        os.chmod(ini, 0o644)   # xinetd runs the script as nobody
        script = os.path.join(base, "check.py")
        shutil.copy(os.path.join(BENCH, "classic", "check.py"), script)
        os.chmod(script, 0o755)
        conf = os.path.join(base, "xinetd.conf")
        with open(os.path.join(BENCH, "classic", "pgsqlchk.xinetd.in")) as f:
            text = f.read()
        text = (text.replace("@PORT@", str(port)).replace("@SERVER@", script)
                .replace("@INI@", ini).replace("@LOG@", os.path.join(base, "xinetd.log")))
        with open(conf, "w") as f:
            f.write(text)
        logf = open(os.path.join(base, "xinetd.stderr"), "w")
        xi = subprocess.Popen(["xinetd", "-dontfork", "-f", conf, "-pidfile",
                               os.path.join(base, "xinetd.pid")],
                              stdout=logf, stderr=subprocess.STDOUT)
        rows = []
        try:
            def up():
                code, body = http_get(port, "/", timeout=10)
                return code == 200 and body
            wait_for(up, 20, interval=0.2, desc="classic checker answers 200")
            pm = self.pg.postmaster_pid()
            for c in CLASSIC_CLIENTS:
                c0 = self.pg_counters()
                cpu0 = tree_cpu_ticks(xi.pid) + tree_cpu_ticks(pm)
                r = loadgen("-m", "http", "-p", port, "-c", c, "-d", CLASSIC_S, "-w", CLASSIC_WARM_S,
                            timeout=CLASSIC_S + 120)
                c1 = self.pg_counters()
                dt = c1["t"] - c0["t"]
                # stragglers finish, and are reaped, before the CPU is read
                wait_for(lambda: self.pg_classic_backends() == 0, 60, interval=0.2,
                         desc="classic checks to finish")
                time.sleep(0.3)
                cpu1 = tree_cpu_ticks(xi.pid) + tree_cpu_ticks(pm)
                r["cpu_ms_per_check"] = (cpu1 - cpu0) / CLK_TCK * 1000 / r["all_requests"] \
                    if r["all_requests"] else 0.0
                r["pg_statements_per_s"] = (c1["other_calls"] - c0["other_calls"]) / dt
                r["pg_sessions_per_s"] = (c1["sessions"] - c0["sessions"]) / dt
                rows.append(r)
                log(f"   c={c:<4d} {r['throughput']:>7.1f} checks/s  p50 {fmt_us(r['p50_us'])}  "
                    f"p99 {fmt_us(r['p99_us'])}  errors {r['errors']}  resets {r['resets']}  "
                    f"PostgreSQL: {r['pg_sessions_per_s']:.1f} connections/s, "
                    f"{r['pg_statements_per_s']:.1f} statements/s; "
                    f"CPU {r['cpu_ms_per_check']:.0f} ms per check")
        finally:
            xi.terminate()
            try:
                xi.wait(10)
            except subprocess.TimeoutExpired:
                xi.kill()
                xi.wait()
            logf.close()
        self.results["classic"] = rows

    # -- 3a. SPOE ratio --------------------------------------------------------------
    def spoe_ratio(self):
        log("== SPOE filter ratio (bench/spoe_ratio.sh " + " ".join(SPOE_ARGS) + ")")
        env = dict(os.environ, PGBDR_AGENT=AGENT_BIN)
        r = subprocess.run([os.path.join(BENCH, "spoe_ratio.sh")] + SPOE_ARGS, env=env,
                           capture_output=True, text=True, timeout=600)
        for line in r.stdout.splitlines():
            log("   " + line)
        if r.returncode != 0:
            log(r.stderr)
            self.results["spoe"] = None
            return
        m = re.search(r"^ratio:\s+([0-9.]+)", r.stdout, re.M)
        w = re.search(r"^without filter:\s+([0-9]+)", r.stdout, re.M)
        f = re.search(r"^with filter:\s+([0-9]+)", r.stdout, re.M)
        self.results["spoe"] = {"ratio": float(m.group(1)), "without": int(w.group(1)),
                                "with": int(f.group(1))}

    # -- 6. failover time, 7. fleet scale (bench/failover.py, bench/fleet.py) ------------
    def failover(self):
        """Raises when a measurement is invalid: the run stops, nothing is written."""
        reg = Registry()
        try:
            self.results["failover"] = failover.Failover(reg, FAILOVER_FAULTS, AGENT_BIN).run()
        finally:
            reg.cleanup()

    def fleet(self):
        reg = Registry()
        try:
            self.results["fleet"] = fleet.Fleet(reg, QUICK, AGENT_BIN).run()
        finally:
            reg.cleanup()

    # -----------------------------------------------------------------------------------
    def judge(self):
        S = self.summary
        classic_best = max(self.results["classic"], key=lambda r: r["throughput"])
        cb = classic_best["throughput"]
        direct = self.results["direct"]
        # throughput against the bare-socket control, same clients, same run
        # (the control runs just before the agent); the classic checker
        # is kept as information
        self.info = []
        for mode, name in (("http", "HTTP checks (new connection each)"),
                           ("agent", "agent-check")):
            ag = next(r for r in direct if r["mode"] == mode and r["concurrency"] == 100)
            ctl = next(r for r in self.results["null_direct"]
                       if r["mode"] == mode and r["concurrency"] == 100)
            ratio = ag["throughput"] / ctl["throughput"] if ctl["throughput"] else 0.0
            S.append((f"{name} throughput vs the bare-socket control (bench/nullserver.c), "
                      "100 clients",
                      f"{ratio:.2f}× ({ag['throughput']:,.0f}/s vs {ctl['throughput']:,.0f}/s, "
                      "this machine's)", "≥ 0.9×",
                      ratio >= 0.9 and ag["errors"] == 0 and ag["not_ok"] == 0))
            best = max((r for r in direct if r["mode"] == mode), key=lambda r: r["throughput"])
            self.info.append((f"{name} throughput vs the classic checker",
                              f"{best['throughput'] / cb:,.0f}× ({best['throughput']:,.0f}/s at "
                              f"{best['concurrency']} clients vs {cb:.1f}/s at "
                              f"{classic_best['concurrency']}; bounded by TCP connection setup "
                              "on this machine)"))
        for mode in ("http", "agent", "spop"):
            runs = [r for r in self.results["latency"] if r["rate_target"] == LAT_TARGET_RATE
                    and r["mode"] == mode and r.get("server") != "nullserver"]
            nulls = [r for r in self.results["latency"] if r["rate_target"] == LAT_TARGET_RATE
                     and r["mode"] == mode and r.get("server") == "nullserver"]
            name = {"http": "HTTP", "agent": "agent-check", "spop": "SPOP"}[mode]
            p99 = median([r["p99_us"] for r in runs])
            ok = p99 < 1000 and all(r["errors"] == 0 and r["not_ok"] == 0 for r in runs)
            ctrl = (f"; nullserver control {fmt_us(median([n['p99_us'] for n in nulls]))}"
                    if nulls else "")
            S.append((f"{name} p99 at {LAT_CLIENTS} clients (each a check every "
                      f"{LAT_CLIENTS * 1000 // LAT_TARGET_RATE} ms)",
                      f"{fmt_us(p99)} median of {len(runs)} runs "
                      f"({', '.join(fmt_us(r['p99_us']) for r in runs)}; p50 "
                      f"{fmt_us(median([r['p50_us'] for r in runs]))}{ctrl})", "< 1 ms", ok))
        sp = self.results.get("spoe")
        S.append(("SPOE filter ratio (HAProxy req/s with / without)",
                  f"{sp['ratio']:.2f}" if sp else "spoe_ratio.sh failed", "≥ 0.5",
                  bool(sp) and sp["ratio"] >= 0.5))
        lo, hi = self.results["pg"][:2]
        d = pct_diff(lo["statements_per_s"], hi["statements_per_s"])
        S.append(("PostgreSQL probes/s independent of check rate",
                  f"{lo['statements_per_s']:.2f}/s at {lo['checks_per_s']:,.0f} checks/s vs "
                  f"{hi['statements_per_s']:.2f}/s at {hi['checks_per_s']:,.0f} checks/s "
                  f"(Δ {d:.1f}%)", "within 5%",
                  d <= 5.0 and hi["checks_per_s"] >= 0.9 * HIGH_RATE and hi["sessions"] == 0))
        at1000 = [r for r in self.results["rss"] if r["connections"] == 1000]
        worst = max(at1000, key=lambda r: r["mem"]["RssAnon"])
        S.append(("agent RssAnon with 1000 idle connections",
                  f"{worst['mem']['RssAnon'] / 1024:.1f} MB (" + ", ".join(
                      f"{r['mode']} {r['mem']['RssAnon'] / 1024:.1f}" for r in at1000) +
                  f"; VmRSS {worst['rss_kb'] / 1024:.1f} MB, of which shared libraries "
                  f"{worst['mem']['RssFile'] / 1024:.1f} MB)", "≤ 4 MB",
                  worst["mem"]["RssAnon"] <= 4 * 1024 and
                  all(r["closed_while_held"] == 0 for r in at1000)))
        self.judge_failover()
        self.judge_fleet()
        h = self.results["haproxy1000"]
        # information, not targets of the brief
        ahttp = next(r for r in direct if r["mode"] == "http" and r["concurrency"] == 100)
        cpu_classic = classic_best["cpu_ms_per_check"]
        cpu_agent = ahttp["agent_cpu_ms_per_1000"] / 1000
        self.info += [
            ("HAProxy 1000 servers × inter 100 ms",
             f"the agent served {h['checks_per_s']:,.0f} checks/s of 10,000/s expected "
             f"(HAProxy used {h['haproxy_cpu_pct']:.0f}% CPU, the agent {h['agent_cpu_pct']:.0f}%; "
             f"the same HAProxy against nullserver: "
             f"{self.results['haproxy1000_null']['checks_per_s']:,.0f}/s); "
             f"{h['min_up']}/1000 UP at worst, {h['final']['chkdown']} UP→DOWN transitions"),
            ("CPU per HTTP check",
             f"classic {cpu_classic:.0f} ms (script + its PostgreSQL backend) vs agent "
             f"{cpu_agent * 1000:.0f} µs: {cpu_classic / cpu_agent:,.0f}× less CPU"),
        ]
        for r in self.results["latency"]:
            if r["rate_target"] != LAT_TARGET_RATE and r.get("server") != "nullserver":
                self.info.append((f"{r['mode']} at {LAT_CLIENTS} clients, {r['rate_target']:,}/s "
                                  "offered", f"{r['throughput']:,.0f}/s served, p50 "
                                  f"{fmt_us(r['p50_us'])}, p99 {fmt_us(r['p99_us'])}"))

    def judge_failover(self):
        fo = self.results["failover"]
        st = fo["stats"]
        label = "" if fo["faults_per_type"] >= 20 else f" ({fo['faults_per_type']} faults: quick run)"
        agents = [i for i in failover.INTEGRATIONS if i["batch"] == "agent"]
        for fault in failover.FAULTS:
            bounds = {}
            for i in agents:
                if fault in ("crash", "shutdown"):
                    bounds[i["name"]] = 1.0
                else:
                    bounds[i["name"]] = (failover.AGENT_TIMEOUT_MS + i["inter_ms"] + 200) / 1000
            p99 = {i["name"]: st[fault][f"{i['name']} down"]["p99"] for i in agents}
            p50 = {i["name"]: st[fault][f"{i['name']} down"]["p50"] for i in agents}
            if fault in ("crash", "shutdown"):
                goal = "< 1 s"
            else:
                goal = "≤ timeout + inter + 200 ms (" + ", ".join(
                    f"{k} {v:.1f} s" for k, v in bounds.items()) + ")"
            self.summary.append((
                f"{failover.FAULT_TEXT[fault]}: p99 from fault to HAProxy DOWN{label}",
                ", ".join(f"{k} {v:.2f} s" for k, v in p99.items()) + " (p50 " +
                ", ".join(f"{v:.2f}" for v in p50.values()) + ")", goal,
                all(p99[k] < bounds[k] if fault in ("crash", "shutdown") else p99[k] <= bounds[k]
                    for k in p99)))
            classic = st[fault]["classic down"]["p50"]
            # a p50 within one sample is known only to be under the sample
            # interval: the ratio is then a lower bound
            floor = failover.SAMPLE_MS / 1000
            ratios = {k: classic / max(v, floor) for k, v in p50.items()}
            self.summary.append((
                f"{failover.FAULT_TEXT[fault]}: p50 to DOWN vs the classic checker's{label}",
                f"classic {classic:.1f} s; " + ", ".join(
                    (f"{k} ≥ {r:,.0f}× faster (p50 within one {failover.SAMPLE_MS} ms sample)"
                     if p50[k] < floor else f"{k} {r:,.1f}× faster")
                    for k, r in ratios.items()), "≥ 5× faster",
                all(v >= 5 for v in ratios.values())))
        false = sum(fo["false_downs"].values())
        self.info.append(("failover: false downs", f"{false} DOWN transitions of the node never "
                          "faulted, over every round (" + ", ".join(
                              f"{k} {v}" for k, v in fo["false_downs"].items()) + ")"))

    def judge_fleet(self):
        fl = self.results["fleet"]
        top = fl["rows"][-1]     # the largest fleet, measured last
        n = top["nodes"]
        label = (" (quick run)" if n < 1000 else "") + (
            ", Unix sockets" if top.get("transport") == "unix" else "") + (
            f", interval {top['interval_ms'] / 1000:g}s (at 1s this machine's servers "
            "saturate: §7)" if top["interval_ms"] != 1000 else "")
        # against the default timeout (2s), the one the fleet runs with
        bound = (top["interval_ms"] + fl["timeout_ms"]) / 1000
        if top.get("saturated"):
            label += (f"; the servers answered {top['probes_per_s']:.0f} of "
                      f"{n * 1000 / top['interval_ms']:.0f} probes/s: this machine's CPU ran out")
        S = self.summary
        S.append((f"fleet of {n} nodes: agent CPU{label}", f"{top['cpu_pct']:.1f}% of a core "
                  f"({top['probes_per_s']:.0f} probes/s)", "< 10%", top["cpu_pct"] < 10))
        S.append((f"fleet of {n} nodes: agent RssAnon{label}",
                  f"{top['rss_anon_kb'] / 1024:.1f} MB", "< 30 MB",
                  top["rss_anon_kb"] < 30 * 1024))
        S.append((f"fleet of {n} nodes: every node's status age{label}",
                  f"max {top['age_max_s']:.2f} s, p99 {top['age_p99_s']:.2f} s over "
                  f"{top['age_samples']:,} samples", f"< interval + default timeout ({bound:.0f} s)",
                  top["age_max_s"] < bound))
        S.append((f"fleet of {n} nodes: /metrics response time{label}",
                  f"p99 {top['metrics_p99_ms']:.1f} ms, p50 {top['metrics_p50_ms']:.1f} ms "
                  f"({top['metrics_bytes']:,} bytes; the agent's CPU per GET "
                  f"{top.get('metrics_cpu_ms', float('nan')):.1f} ms)", "< 50 ms",
                  top["metrics_p99_ms"] < 50))
        sm = fl["storm"]
        S.append((f"reconnect storm after a whole-fleet outage ({sm['nodes']} nodes){label}",
                  f"busiest 100 ms: {sm['busiest_share'] * 100:.0f}% of the {sm['connections']} "
                  f"reconnections (p10-p90 spread {sm['p90_s'] - sm['p10_s']:.2f} s)",
                  "≤ 20% in any 100 ms", sm["busiest_share"] <= 0.20))
        per = ", ".join(f"{r['nodes']} ({r.get('transport', 'tcp')}, "
                        f"{r.get('interval_ms', 1000) / 1000:g}s): "
                        f"{r['cpu_us_per_probe']:.0f} µs" for r in fl["rows"])
        self.info.append(("fleet: agent CPU per probe", per))

    # -----------------------------------------------------------------------------------
    def write_results(self, started, machine, vers):
        self.vers = vers
        date = started.strftime("%Y-%m-%d %H:%M UTC")
        R = self.results
        out = []
        out.append("# Benchmark results\n")
        out.append(BEGIN_MARK + "\n")
        if QUICK:
            out.append("**Quick run** (`bench/run.sh --quick`): shorter windows, "
                       f"{FAILOVER_FAULTS} faults per type instead of 20, fleets of "
                       "100 and 300 nodes only; every figure below comes from it.\n")
        out.append(f"Written by `bench/run.sh` (this run: {date}). It rewrites this file, keeping "
                   "the SPOE section that `bench/spoe_ratio.sh` writes and appending each "
                   "run's summary to [History](#history). Targets are judged on ratios "
                   "measured in the same run, or on bounds; the 2 cores are shared with other "
                   "tenants, so absolute numbers move between runs.\n")
        out.append("**Machine:** " + machine + ".  ")
        out.append(f"**Software:** {vers['agent']} (meson debugoptimized build in build-bench/), "
                   f"HAProxy {vers['haproxy']}, {vers['xinetd']}, PostgreSQL 15, "
                   "bench/loadgen.c built with `cc -O2`.\n")
        out.append("## Summary\n")
        out.append(self.summary_table())
        out.append("Also measured (no target):\n")
        for name, value in self.info:
            out.append(f"- {name}: {value}.")
        out.append("")
        out.append("Profiles, causes and proposed daemon fixes for the missed targets: "
                   "[PROFILE.md](PROFILE.md).\n")

        # 1. classic
        out.append("## 1. Baseline: the classic checker\n")
        out.append("How measured: xinetd (`xinetd -dontfork -f` with its own config from "
                   "`bench/classic/pgsqlchk.xinetd.in`, the classic service block on a free "
                   "loopback port, `cps` limit lifted) forks `bench/classic/check.py` as nobody "
                   "for each connection: configparser reads database.ini, a NEW psycopg2 "
                   "connection as superuser over TCP (scram-sha-256), `SELECT node_status FROM "
                   "bdr.bdr_nodes WHERE node_name = '<hostname>'` on the BDR 1/2 emulation "
                   "(local node named after this machine), a hand-made reply with a wrong "
                   "Content-Length, `sleep 0.1`, exit; the request is never read, so many "
                   "replies end in a reset (counted, the reply still counts when it arrived). "
                   "Driven by loadgen in `http` mode (new connection per check, HAProxy's "
                   f"`OPTIONS / HTTP/1.0`), closed loop, {CLASSIC_S:g} s after {CLASSIC_WARM_S:g} s "
                   "warm-up, against the same PostgreSQL as the agent. PostgreSQL load from "
                   "pg_stat_database.sessions and pg_stat_statements (superuser statements) "
                   "over the run. CPU per check: utime+stime of xinetd and its reaped children "
                   "(the scripts) plus the postmaster's reaped children (the backends) ÷ checks.\n")
        out.append("| clients | checks/s | p50 | p99 | errors | resets seen | CPU per check | PostgreSQL connections/s | statements/s |")
        out.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in R["classic"]:
            out.append(f"| {r['concurrency']} | {r['throughput']:.1f} | {fmt_us(r['p50_us'])} | "
                       f"{fmt_us(r['p99_us'])} | {r['errors']} | {r['resets']} | "
                       f"{r['cpu_ms_per_check']:.0f} ms | {r['pg_sessions_per_s']:.1f} | "
                       f"{r['pg_statements_per_s']:.1f} |")
        out.append("")

        # 2. direct
        out.append("## 2. Direct load (bench/loadgen.c)\n")
        out.append("How measured: `bench/loadgen` (one thread, epoll, non-blocking, RLIMIT_NOFILE "
                   "raised) against the agent, which watches the same PostgreSQL (BDR 1/2 "
                   f"emulation, node ready, interval {AGENT_INTERVAL}, the default). Closed loop: each client "
                   "sends its next request when the previous reply is complete; "
                   f"{RUN_S:g} s measured after {WARM_S:g} s warm-up. `http`: a new connection "
                   "per check (`OPTIONS / HTTP/1.0`, as HAProxy), latency from connect() to the "
                   "server's close; `http-ka`: keep-alive `GET / HTTP/1.1`; `agent`: connect, "
                   "read the line until close; `spop`: one HELLO per connection, then NOTIFY "
                   "`pgbdr-status` with `depth` in flight per connection, ACKs matched by "
                   "stream/frame id. Agent CPU: /proc/PID/stat utime+stime over the run ÷ "
                   "checks answered × 1000. loadgen and the agent share 2 cores with other "
                   "tenants, so a closed loop at 100 or 1000 clients is saturated and its "
                   "latency is queueing (Little's law: clients ÷ throughput). Control: "
                   "`bench/nullserver.c`, the cheapest server for the same exchange (read the "
                   "request, write a fixed reply, close; or reply on connect), run just before "
                   "the agent: what this machine and loadgen allow at best.\n")
        out.append("| server | mode | clients | depth | checks/s | p50 | p99 | p99.9 | errors | agent CPU ms / 1000 checks |")
        out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in R["direct"] + R["null_direct"]:
            null = r.get("server") == "nullserver"
            out.append(f"| {'nullserver (control)' if null else 'agent'} | {r['mode']} | "
                       f"{r['concurrency']} | {r['depth']} | "
                       f"{r['throughput']:,.0f} | {fmt_us(r['p50_us'])} | {fmt_us(r['p99_us'])} | "
                       f"{fmt_us(r['p999_us'])} | {r['errors'] + r['not_ok']} | "
                       f"{'' if null else format(r['agent_cpu_ms_per_1000'], '.1f')} |")
        out.append("")
        out.append(f"### Latency at {LAT_CLIENTS} clients (the p99 target)\n")
        out.append(f"How measured: open loop, {LAT_CLIENTS} connections-worth of clients, each "
                   "sending its checks at fixed times whatever the replies (no coordinated "
                   f"omission), {LAT_S:g} s measured after {WARM_S:g} s. The target is judged at "
                   f"{LAT_TARGET_RATE:,} checks/s, on the median p99 of {LAT_ROUNDS} rounds "
                   "(each: nullserver control, then the agent, per mode) "
                   f"(each client a check every "
                   f"{LAT_CLIENTS * 1000 // LAT_TARGET_RATE} ms, like 100 HAProxy servers at inter "
                   "100 ms); 10,000/s is shown too. Latency from the start of each check "
                   "(connect() for http and agent-check, the NOTIFY write for SPOP) to its "
                   "complete reply. The nullserver control runs just before each agent run.\n")
        out.append("| round | server | mode | offered/s | served/s | p50 | p90 | p99 | p99.9 | max | errors | agent CPU ms / 1000 checks |")
        out.append("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in R["latency"]:
            null = r.get("server") == "nullserver"
            out.append(f"| {r['round']} | {'nullserver (control)' if null else 'agent'} | {r['mode']} | "
                       f"{r['rate_target']:,.0f} | {r['throughput']:,.0f} | "
                       f"{fmt_us(r['p50_us'])} | {fmt_us(r['p90_us'])} | {fmt_us(r['p99_us'])} | "
                       f"{fmt_us(r['p999_us'])} | {fmt_us(r['max_us'])} | "
                       f"{r['errors'] + r['not_ok']} | "
                       f"{'' if null else format(r['agent_cpu_ms_per_1000'], '.1f')} |")
        out.append("")

        # 3b. haproxy 1000
        h = R["haproxy1000"]
        out.append("## 3. HAProxy in the loop\n")
        out.append("3a, the SPOE filter ratio, is [its own section](#spoe-filter-ratio), "
                   "written by `bench/spoe_ratio.sh`, which `bench/run.sh` calls.\n")
        out.append("### 3b. HTTP check rounds: 1000 servers every 100 ms\n")
        out.append("How measured: a generated HAProxy config with one backend of 1000 servers, "
                   "all at the same PostgreSQL port, each `check port <agent http port> inter "
                   "100`, `option httpchk` (`OPTIONS / HTTP/1.0`), `http-check expect status "
                   f"200`, rise 2 fall 2. After 2 s, a {HAPROXY_WINDOW_S:g} s window: checks "
                   "served = delta of the agent's "
                   "`pgbdr_listener_requests_total{listener=\"http\"}`; `show stat` every 2 s "
                   "for each server's status and `chkdown` (UP→DOWN transitions) and check "
                   "duration; CPU of HAProxy and the agent from /proc over the window. Control: "
                   f"the same config against nullserver ({HAPROXY_NULL_WINDOW_S:g} s window, "
                   "its own reply counter): the check rate HAProxy itself reaches here.\n")
        out.append("| checked server | servers | inter | expected checks/s | served checks/s | UP (worst sample) | UP→DOWN transitions | check duration p50 / max | HAProxy CPU | agent CPU |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for label, row in (("agent", h), ("nullserver (control)", R.get("haproxy1000_null"))):
            if not row:
                continue
            out.append(f"| {label} | 1000 | 100 ms | 10,000 | {row['checks_per_s']:,.0f} | "
                       f"{row['min_up']}/1000 | {row['final']['chkdown']} | "
                       f"{row['final']['check_ms_p50']} / {row['final']['check_ms_max']} ms | "
                       f"{row['haproxy_cpu_pct']:.0f}% | "
                       f"{row['agent_cpu_pct']:.0f}% |" if label == "agent" else
                       f"| {label} | 1000 | 100 ms | 10,000 | {row['checks_per_s']:,.0f} | "
                       f"{row['min_up']}/1000 | {row['final']['chkdown']} | "
                       f"{row['final']['check_ms_p50']} / {row['final']['check_ms_max']} ms | "
                       f"{row['haproxy_cpu_pct']:.0f}% | |")
        out.append("")

        # 4. pg load
        out.append("## 4. PostgreSQL load\n")
        out.append("How measured: statements run in the agent's database (`suppliers`) by its "
                   "role, from pg_stat_statements (`shared_preload_libraries`, track = top: "
                   "exact and updated at once), read from the `postgres` database (not counted) "
                   f"before and after a {PG_WINDOW_S:g} s window of HTTP keep-alive checks sent "
                   "by loadgen in open loop at each rate; nothing else is connected to "
                   f"`suppliers`. This phase runs its own agent with interval {PG_AGENT_INTERVAL} "
                   "(10 probes/s, so that a window's count is exact to about 1%). The last row "
                   "counts during the HAProxy window of 3b (new connection per check, main "
                   f"agent with interval {AGENT_INTERVAL}: too few probes in 10 s for a precise "
                   "rate, shown for the connection count). xact_commit/s from pg_stat_database is coarser (a "
                   "backend flushes it at most once a second). New sessions: "
                   "pg_stat_database.sessions delta.\n")
        out.append("| load | checks/s offered | checks/s served | probes (statements)/s in PostgreSQL | xact_commit/s | new sessions | agent backends |")
        out.append("|---|---:|---:|---:|---:|---:|---:|")
        for r in R["pg"] + ([R["pg_haproxy"]] if R.get("pg_haproxy") else []):
            out.append(f"| {r['label']} | {r['rate_target']:,} | {r['checks_per_s']:,.1f} | "
                       f"{r['statements_per_s']:.2f} | {r['xact_per_s']:.2f} | {r['sessions']} | "
                       f"{r['backends']} |")
        cb = max(R["classic"], key=lambda r: r["throughput"])
        out.append("")
        if R.get("pg_probe"):
            out.append("What a probe costs PostgreSQL (pg_stat_statements, track_planning on; "
                       "the BDR 1/2 emulation's functions are SQL, where real BDR's are C):\n")
            out.append("| calls in the windows | mean plan time | mean exec time | statement |")
            out.append("|---:|---:|---:|---|")
            for calls, plan, exe, q in R["pg_probe"]:
                out.append(f"| {calls} | {plan} ms | {exe} ms | `{q}…` |")
            out.append("")
        out.append(f"For contrast, the classic checker at its best rate ({cb['throughput']:.1f} "
                   f"checks/s, {cb['concurrency']} clients) opened "
                   f"{cb['pg_sessions_per_s']:.1f} PostgreSQL connections/s and ran "
                   f"{cb['pg_statements_per_s']:.1f} statements/s: its PostgreSQL load grows "
                   "with the check rate; the agent's stays at one probe per interval on one "
                   "connection.\n")

        # 5. cost
        out.append("## 5. Cost\n")
        out.append("How measured: memory of a fresh agent (before any load) while loadgen holds N "
                   "idle connections (`-H`): HTTP keep-alive connections after one request each, "
                   "and SPOP connections after the HELLO, as HAProxy keeps them "
                   "(`client_timeout` raised to 120 s so none closes while measured). VmRSS, "
                   "RssAnon and RssFile from /proc/PID/status, PSS from smaps_rollup (shared "
                   "library pages divided among the processes mapping them). CPU per 1000 "
                   "checks: agent utime+stime delta over a run ÷ checks × 1000.\n")
        out.append("| idle connections | kind | VmRSS | RssAnon | RssFile | PSS |")
        out.append("|---:|---|---:|---:|---:|---:|")
        for r in R["rss"]:
            m = r["mem"]
            out.append(f"| {r['connections']} | {r['kind']} | {m['VmRSS'] / 1024:.1f} MB | "
                       f"{m['RssAnon'] / 1024:.1f} MB | {m['RssFile'] / 1024:.1f} MB | "
                       f"{m['Pss'] / 1024:.1f} MB |")
        out.append("")
        out.append("Biggest resident mappings with 1000 idle HTTP connections: " + ", ".join(
            f"{name} {kb / 1024:.1f} MB" for name, kb in R.get("rss_top", [])) + ".\n")
        out.append("| mode, 100 clients, closed loop | agent CPU per 1000 checks |")
        out.append("|---|---:|")
        for r in R["direct"]:
            if r["concurrency"] == 100:
                out.append(f"| {r['mode']} | {r['agent_cpu_ms_per_1000']:.1f} ms |")
        out.append("")

        self.write_failover(out)
        self.write_fleet(out)
        out.append(END_MARK + "\n")

        # Sections other scripts and engineers write (the SPOE ratio of
        # bench/spoe_ratio.sh, fuzzing, Lua routing...): kept as they are,
        # in their order, wherever they stood in the old file.
        old = open(RESULTS).read() if os.path.exists(RESULTS) else ""
        for title, body in foreign_sections(old):
            out.append(body.rstrip() + "\n")
        before = self.old_results
        hist = re.search(r"^## History\n(.*)\Z", before, re.S | re.M)
        history = hist.group(1).strip() if hist else ""
        history = re.sub(r"^Each run's summary, oldest first\.\s*", "", history)
        if not hist and "## SPOE filter ratio" in before:
            # the first history entry: the SPOE result that predates bench/run.sh
            om = re.search(r"`bench/spoe_ratio.sh[^`]*`, (\d{4}-\d\d-\d\d).*?\*\*ratio\*\* \| \*\*([0-9.]+)\*\*",
                           before, re.S)
            if om:
                history = (f"### {om.group(1)} (bench/spoe_ratio.sh alone)\n\n"
                           "| target | measured | goal | result |\n|---|---|---|---|\n"
                           f"| SPOE filter ratio | {om.group(2)} | ≥ 0.5 | "
                           f"{'PASS' if float(om.group(2)) >= 0.5 else 'FAIL'} |")
        entry = (f"### {date} (bench/run.sh{' --quick' if QUICK else ''})\n\n"
                 + self.summary_table().rstrip())
        out.append("## History\n")
        out.append("Each run's summary, oldest first.\n")
        if history:
            out.append(history.rstrip() + "\n")
        out.append(entry + "\n")
        with open(RESULTS, "w") as f:
            f.write("\n".join(out).rstrip() + "\n")

    def write_failover(self, out):
        fo = self.results["failover"]
        st = fo["stats"]
        n = fo["faults_per_type"]
        agents = [i for i in failover.INTEGRATIONS if i["batch"] == "agent"]
        base = [i for i in failover.INTEGRATIONS if i["batch"] == "baseline"]
        out.append("## 6. Failover time\n")
        out.append(
            f"How measured: `bench/failover.py`, {n} faults of each kind"
            f"{'' if n >= 20 else ' (quick run)'}, through real HAProxy "
            f"({self.vers['haproxy']}) and real PostgreSQL 15 (BDR 1/2 emulation). Three nodes; "
            "each fault hits the current write leader (node1 or node2, the two active servers "
            "of the examples; node3 is never faulted). The agent integrations run the shipped "
            "examples as they are, configured only through their environment variables: "
            "`httpchk.cfg` (one agent per node, HTTP), `agent-check.cfg` (the same agents' "
            "agent-check port) and `spoe-tcp.cfg` + `pgbdr-spoe.conf` (new connections go to "
            "the write leader named by one central agent) and `lua-tcp.cfg` + `pgbdr.lua` "
            "(the script polls the same central agent every "
            f"{fo['shipped'].get('lua_poll_ms', 500):.0f} ms, the shipped default, and leaves only "
            "the write leader READY in `pg_write`). Shipped check timings: "
            f"httpchk inter {fo['shipped']['httpchk_inter_ms']:.0f} ms, fastinter "
            f"{fo['shipped']['httpchk_fastinter_ms']:.0f} ms, fall 2; agent-check agent-inter "
            f"{fo['shipped']['agent_inter_ms']:.0f} ms. The agents run with interval "
            f"{fo['agent_settings']['interval']}, timeout {fo['agent_settings']['timeout']}, "
            "rise 1, fall 1; the central one with `leader_handover = 0s` (one agent answers "
            "every routing decision, so no HAProxy can see two leaders) and "
            "`leader_return_delay = 1d` (the role moves only when its holder fails). "
            "The baselines run at the same time on "
            f"{fo['baseline_nodes']} nodes of their own, each faulted in its own thread: the "
            "classic checker (`bench/classic/check.py` under xinetd) with the seed's settings "
            f"(`{fo['seed']}`), and HAProxy's `option pgsql-check` with the shipped httpchk "
            "timings and the agents' timeout as `timeout check`.\n")
        out.append(
            "Faults: the postmaster SIGKILLed (alone: its backends notice and exit); a clean "
            "fast shutdown (SIGINT to the postmaster); the node hung (SIGSTOP of the postmaster "
            "and every child; the fault time is the first SIGSTOP); the path black-holed by "
            "`bench/tcpproxy.py` (accepts, forwards nothing either way). The agents, the "
            "classic checker and pgsql-check always reach PostgreSQL through that proxy; "
            "HAProxy's client traffic crosses it in the black-hole rounds only. During each "
            "fault one loop samples, every 10 ms, every HAProxy's stats socket (`show stat`: "
            "status and session count per server), the faulted node's agent (`GET /`) and the "
            "central agent (`/status`), and opens a new client connection through each "
            "frontend every other sample. Measured sample interval: agent rounds p50 "
            f"{fo['sampling']['agent']['p50_ms']:.1f} ms, p99 {fo['sampling']['agent']['p99_ms']:.1f} ms; "
            f"baselines p50 {fo['sampling']['baseline']['p50_ms']:.1f} ms, p99 "
            f"{fo['sampling']['baseline']['p99_ms']:.1f} ms (the run is refused above "
            f"{failover.MAX_GAP_P50_MS} / {failover.MAX_GAP_P99_MS} ms).\n")
        out.append(
            "Columns: **verdict**, the agent's answer changes (503 from the node's own agent; "
            "another write leader from the central agent, for SPOE and Lua); **DOWN**, HAProxy's "
            "stats show the server DOWN (for Lua: out of READY, put in MAINT by the script; for "
            "SPOE, which marks nothing down: the last new connection routed to the failed "
            "node); **traffic**, the first new client connection landing "
            "on a healthy node after the last one that landed on the failed node (for SPOE: "
            "on the new write leader). Under leastconn a failed node that holds its "
            "connections open (hung, black-holed) is avoided before it is DOWN, so traffic "
            "can come before DOWN. p50 / p99 in seconds over the faults (nearest rank: with "
            "20 faults the p99 is the worst one); absolute times are this machine's.\n")
        out.append("| fault | integration | verdict p50 / p99 | DOWN p50 / p99 | "
                   "traffic p50 / p99 |")
        out.append("|---|---|---:|---:|---:|")

        def cell(d, key):
            v = d.get(key)
            return f"{v['p50']:.2f} / {v['p99']:.2f}" if v else "—"
        for fault in failover.FAULTS:
            d = st[fault]
            for i in agents + base:
                verdict = {"node": "node-agent verdict", "leader": "central-agent verdict"}.get(
                    i["verdict"])
                out.append(f"| {failover.FAULT_TEXT[fault]} | {i['name']} | "
                           f"{cell(d, verdict) if verdict else '—'} | "
                           f"{cell(d, i['name'] + ' down')} | "
                           f"{cell(d, i['name'] + ' traffic') if i['traffic'] else '—'} |")
        out.append("")
        out.append(
            "Why the shipped timings changed (httpchk.cfg `inter 2s fastinter 1s` → "
            f"`inter {fo['shipped']['httpchk_inter_ms']:.0f}ms fastinter "
            f"{fo['shipped']['httpchk_fastinter_ms']:.0f}ms`, agent-check.cfg `agent-inter 2s` → "
            f"`{fo['shipped']['agent_inter_ms']:.0f}ms`): with `fall 2` a crash reached HAProxy "
            "after up to inter + fastinter (3 s), past the 1 s target. The agent answers "
            "from its cache in microseconds, so a check every few hundred ms costs nothing "
            "(section 3b: 10,000 checks/s at 22% of a core) and never touches PostgreSQL. "
            "`fall 2` stays: one lost check (an agent restart) does not mark a node DOWN. "
            "False downs over this run (DOWN transitions of node3, never faulted): " +
            ", ".join(f"{k} {v}" for k, v in fo["false_downs"].items()) + ".\n")

    def write_fleet(self, out):
        fl = self.results["fleet"]
        out.append("## 7. Fleet scale\n")
        out.append(
            "How measured: `bench/fleet.py`. One agent watches N nodes at interval "
            f"1s (and 1000 at 3s, see below), timeout {fl['timeout_ms'] / 1000:g}s, with the "
            "default `max_connecting` 16 (before that bound, 70 or more nodes starting "
            "together never came up at 2s on this machine; see PROFILE.md §5): "
            "databases copied from one template with the BDR 1/2 emulation, spread over "
            f"{fl['servers']} PostgreSQL 15 servers (max_connections raised), each node a "
            "`[node.NAME]` section with its own connection. A fresh agent per size; once every "
            "node is ready and 3 s more, a window: agent CPU from /proc (utime+stime, % of one "
            "core), RssAnon, probes/s (the probe duration counters of /metrics), each node's "
            "status age (now − `checked_at` in `/status`, sampled every second, p99 and max "
            "over nodes and samples); then 20 GETs each of `/status` and `/metrics`. Absolute "
            "figures are this machine's (2 shared cores).\n")
        out.append(
            "Transport: the servers run on the same two cores as the agent, and at 1000 probes "
            "a second they are what runs out of CPU, not the agent (load average 65, half of it "
            "system time, the agent under 10% of a core). Over loopback TCP, which costs both "
            "ends more than a Unix socket, a fleet of 1000 never came ready, stuck near 900 nodes with probes timing out and "
            "new connections starved of a core. So TCP, as an agent reaches remote servers, is "
            "measured up to 300 nodes; the servers' Unix sockets at 300 (the same fleet on both, "
            "for comparison) and at 1000. The agent's side of a probe (libpq, the protocol, the "
            "judgement) is the same on both. At 1000 nodes the servers still cannot answer "
            "1000 probes a second here: that row is marked *saturated* when they answered under "
            "95% of them, and its ages and latencies are then the machine's. The row at interval "
            "3s asks a third as much of them, to show the agent's own memory, CPU and reply "
            "times at 1000 nodes; the 1000-node targets are judged on it, and the reconnect "
            "storm runs with it.\n")
        out.append("| nodes | transport | interval | all ready after | agent CPU | RssAnon | probes/s | CPU per probe "
                   "| status age p99 / max | /status p50 / p99 | /status size "
                   "| /metrics p50 / p99 | /metrics size |")
        out.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in fl["rows"]:
            sat = " (*saturated*)" if r.get("saturated") else ""
            ready = (f"{r['ready_s']:.1f} s" if r.get("ready_s") is not None else
                     f"never ({r.get('never_ready')} of {r['nodes']} not within "
                     f"{fleet.READY_WAIT_S} s)")
            out.append(f"| {r['nodes']} | {r.get('transport', 'tcp')} | "
                       f"{r['interval_ms'] / 1000:g}s | {ready} | {r['cpu_pct']:.1f}% | "
                       f"{r['rss_anon_kb'] / 1024:.1f} MB | {r['probes_per_s']:.0f}{sat} | "
                       f"{r['cpu_us_per_probe']:.0f} µs | {r['age_p99_s']:.2f} / "
                       f"{r['age_max_s']:.2f} s | {r['status_p50_ms']:.1f} / "
                       f"{r['status_p99_ms']:.1f} ms | {r['status_bytes']:,} B | "
                       f"{r['metrics_p50_ms']:.1f} / {r['metrics_p99_ms']:.1f} ms | "
                       f"{r['metrics_bytes']:,} B |")
        out.append("")
        if all("metrics_cpu_ms" in r for r in fl["rows"]):
            out.append(
                "The agent's own CPU per GET (its CPU over the 20 GETs, the probes' share "
                "taken off): what a reply costs it, whatever the run queue adds to the response "
                "time above: " + "; ".join(
                    f"{r['nodes']} nodes ({r.get('transport', 'tcp')}, "
                    f"{r['interval_ms'] / 1000:g}s) /status "
                    f"{r['status_cpu_ms']:.1f} ms, /metrics {r['metrics_cpu_ms']:.1f} ms"
                    for r in fl["rows"]) + ".\n")
        sm = fl["storm"]
        out.append(
            f"Reconnect storm: with {sm['nodes']} nodes ({sm.get('transport', 'tcp')}), every PostgreSQL server stopped at once "
            f"(immediate), kept down {sm['outage_s']:g} s, started again; the agent's "
            f"{sm['connections']} new backends' `backend_start` (pg_stat_activity), relative to "
            f"the moment the last server was up: first {sm['first_s']:.2f} s, p10 "
            f"{sm['p10_s']:.2f} s, p50 {sm['p50_s']:.2f} s, p90 {sm['p90_s']:.2f} s, last "
            f"{sm['last_s']:.2f} s; the busiest 100 ms took {sm['busiest_100ms']} "
            f"({sm['busiest_share'] * 100:.0f}%). Failed rounds retry after a random 1 to 2 "
            "intervals (agent/poller.c), so pollers that failed together do not retry "
            "together (before that change they retried after exactly two intervals, all in the "
            "same millisecond; that case was not measured here).\n")

    def summary_table(self):
        rows = ["| target | measured | goal | result |", "|---|---|---|---|"]
        for name, measured, goal, ok in self.summary:
            rows.append(f"| {name} | {measured} | {goal} | {'PASS' if ok else '**FAIL**'} |")
        return "\n".join(rows) + "\n"


def main():
    # a SIGTERM ends the run through the cleanups (servers, agents, HAProxy)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(2))
    started = datetime.datetime.now(datetime.timezone.utc)
    t_start = time.monotonic()
    machine = machine_description()
    vers = versions()
    log(f"machine: {machine}")
    b = Bench()
    phases = os.environ.get("BENCH_PHASES")
    if phases:
        # debugging: run some phases only, judge and record nothing
        try:
            b.start_pg()
            b.start_agent()
            for name in phases.split(","):
                getattr(b, name)()
        finally:
            b.reg.cleanup()
        return 0
    try:
        b.start_pg()
        b.start_agent()
        b.measure_rss()
        b.direct_load()
        b.haproxy_1000()
        b.pg_load()
        b.classic()
    finally:
        b.reg.cleanup()
    b.spoe_ratio()
    b.failover()
    b.fleet()
    b.judge()
    b.write_results(started, machine, vers)
    log(f"recorded in {RESULTS}")
    log("")
    failed = 0
    for name, measured, goal, ok in b.summary:
        log(f"{'PASS' if ok else 'FAIL'}  {name}: {measured} (goal {goal})")
        failed += not ok
    for name, value in b.info:
        log(f"INFO  {name}: {value}")
    log(f"total time {time.monotonic() - t_start:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
