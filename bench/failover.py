#!/usr/bin/python3
"""
Failover time through real HAProxy and real PostgreSQL.

Three PostgreSQL 15 servers (node1..node3, the BDR 1/2 catalog emulation
in database "app") are watched, all at the same time, by:

  httpchk      haproxy-examples/httpchk.cfg, one agent per node (HTTP)
  agent-check  haproxy-examples/agent-check.cfg, the same agents (agent port)
  spoe         haproxy-examples/spoe-tcp.cfg + pgbdr-spoe.conf: new client
               connections go to the write leader named by one central agent
  lua          haproxy-examples/lua-tcp.cfg + pgbdr.lua: the script polls the
               same central agent and leaves only the write leader READY in
               pg_write (the others in MAINT)
  classic      the classic checker (bench/classic/check.py under xinetd) with
               the seed's HAProxy settings: inter 5000 fastinter 2000 rise 2 fall 2
  pgsql-check  HAProxy's own "option pgsql-check", with the shipped
               httpchk.cfg check timings

An integration is one entry of INTEGRATIONS.

Each fault hits the current write leader (node1 or node2, both active
servers of httpchk.cfg and agent-check.cfg; node3 is never faulted, so its
DOWN transitions count false downs). Faults: the postmaster SIGKILLed;
the node hung (SIGSTOP of the postmaster and every child); the path
black-holed by bench/tcpproxy.py; a clean (fast) shutdown. The agents,
the classic checker and pgsql-check reach PostgreSQL through that proxy
in every round; HAProxy's client traffic goes straight to PostgreSQL,
except in the black-hole rounds, where it crosses the proxy too.

While a fault is measured, one loop samples every SAMPLE_MS: HAProxy's
stats socket ("show stat": status and session count per server) of every
HAProxy, the faulted node's own agent (GET /) and the central agent
(/status); every other sample it opens one new client connection through
each traffic frontend. From the samples, per fault and integration:

  verdict  first sample where the agent's answer changed (503 from the
           node's agent; another write leader from the central agent)
  down     first sample where HAProxy shows the server DOWN (for spoe:
           from when no new connection is routed to the failed node)
  traffic  first new client connection landing on a healthy node after
           the last one that landed on the failed node (for spoe: on the
           new write leader)

The run fails loudly (RuntimeError) when a fault was not injected, when
an observer never saw it, or when the samples are too sparse for the
figures (see MAX_GAP_*).

Run alone (as root) for a smoke run: PGBDR_AGENT=... bench/failover.py [--quick]
"""

import json
import math
import random
import re
import os
import signal
import socket
import subprocess
import sys
import threading
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, BENCH)

from harness import (FIXTURES_DIR, HAPROXY_EXAMPLES, Agent, HAProxy, PgServer,  # noqa: E402
                     Registry, free_port, new_password, process_tree, reap,
                     signal_quiet, wait_for)
from tcpproxy import TcpProxy  # noqa: E402

FAULTS = ("crash", "shutdown", "hang", "blackhole")
FAULT_TEXT = {
    "crash": "postmaster SIGKILLed",
    "shutdown": "clean shutdown (SIGINT: fast shutdown)",
    "hang": "node hung (SIGSTOP of every process)",
    "blackhole": "network path black-holed (TCP proxy)",
}
NODES = ("node1", "node2", "node3")
ACTIVE = ("node1", "node2")       # faulted in turn; node3 never
SAMPLE_MS = 10
# the samples must come at least this often for the figures to hold
MAX_GAP_P50_MS = 20       # over every sample after a fault
MAX_GAP_P99_MS = 100
MAX_EVENT_GAP_MS = 100    # before the sample that saw an event: a fault past it is redone
MAX_DISCARDED = 10        # (+ 2 per fault asked) redone faults before the run is refused
SETTLE_S = 0.3       # after the last event, to see that no connection lands on the failed node
FAULT_DEADLINE_S = 45

# The agents, as the bench runs them. interval is what bounds hang and
# black-hole detection (a probe must start, then time out); the target
# for those is timeout + HAProxy's inter + 200 ms.
AGENT_SETTINGS = {"interval": "100ms", "timeout": "1s"}
AGENT_TIMEOUT_MS = 1000


def shipped_ms(cfg, var):
    """The default of "${VAR-default}" in a shipped example, in ms (a
    bare number is ms, as pgbdr.lua's settings are)."""
    with open(os.path.join(HAPROXY_EXAMPLES, cfg)) as f:
        m = re.search(r"\$\{" + var + r"-([0-9.]+)(ms|s)?\}", f.read())
    if not m:
        raise RuntimeError(f"{cfg}: no default for {var}")
    return float(m.group(1)) * (1000 if m.group(2) == "s" else 1)


# what the shipped configs use (haproxy-examples/*.cfg defaults)
SHIPPED = {"httpchk_inter_ms": shipped_ms("httpchk.cfg", "PGBDR_CHECK_INTER"),
           "httpchk_fastinter_ms": shipped_ms("httpchk.cfg", "PGBDR_CHECK_FASTINTER"),
           "agent_inter_ms": shipped_ms("agent-check.cfg", "PGBDR_AGENT_INTER"),
           "lua_poll_ms": shipped_ms("lua-tcp.cfg", "PGBDR_POLL_INTERVAL")}
SEED = "inter 5000 fastinter 2000 rise 2 fall 2"


# Every integration measured. kind "check": HAProxy marks a server DOWN
# (pxname, svname per node); kind "route": HAProxy routes each new
# connection by the agent's answer (one backend per node); kind
# "leader": a script leaves only the write leader's server READY and puts
# the others in MAINT (its "down": the failed node's server not UP).
# inter_ms: how often HAProxy asks (0: on every new connection).
# traffic: the key of the frontend port that client connections probe.
# verdict: which agent's answer is its verdict ("node": the faulted node's
# own agent, GET /; "leader": the central agent's write leader).
# batch: "agent" integrations share one fault sequence on node1..node3;
# the "baseline" ones (the classic checker's DOWN takes seconds, and as
# long to come back UP) have their own nodes, faulted concurrently.
INTEGRATIONS = [
    {"name": "httpchk", "haproxy": "httpchk", "kind": "check",
     "server": lambda n: ("pg_bdr", n), "traffic": "httpchk", "verdict": "node",
     "batch": "agent", "inter_ms": SHIPPED["httpchk_inter_ms"]},
    {"name": "agent-check", "haproxy": "agentcheck", "kind": "check",
     "server": lambda n: ("pg_bdr", n), "traffic": "agentcheck", "verdict": "node",
     "batch": "agent", "inter_ms": SHIPPED["agent_inter_ms"]},
    {"name": "spoe", "haproxy": "spoe", "kind": "route",
     "server": lambda n: (f"pg_{n}", n), "traffic": "spoe", "verdict": "leader",
     "batch": "agent", "inter_ms": 0},
    {"name": "lua", "haproxy": "lua", "kind": "leader",
     "server": lambda n: ("pg_write", n), "traffic": "lua", "verdict": "leader",
     "batch": "agent", "inter_ms": SHIPPED["lua_poll_ms"]},
    {"name": "classic", "haproxy": "baseline", "kind": "check",
     "server": lambda n: ("classic", n), "traffic": None, "verdict": None,
     "batch": "baseline"},
    {"name": "pgsql-check", "haproxy": "baseline", "kind": "check",
     "server": lambda n: ("pgsqlcheck", n), "traffic": None, "verdict": None,
     "batch": "baseline"},
]


def log(msg):
    print(msg, flush=True)


def percentile(values, q):
    """Nearest rank (with 20 values, p99 is the largest)."""
    v = sorted(values)
    if not v:
        return None
    return v[max(0, math.ceil(q / 100 * len(v)) - 1)]


def http_code(port, path="/", timeout=1.0):
    try:
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
        return int(head.split()[1]), body
    except (OSError, ValueError, IndexError):
        return None, b""


def proc_state(pid):
    """The state letter of a process (R, S, T, Z...), None when gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def stats(hp):
    """{(pxname, svname): (status, stot)} from one "show stat"."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        s.connect(hp.stats_socket)
        s.sendall(b"show stat\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    lines = data.decode().splitlines()
    hdr = lines[0].lstrip("# ").split(",")
    ipx, isv, ist, istot = (hdr.index(k) for k in ("pxname", "svname", "status", "stot"))
    out = {}
    for line in lines[1:]:
        f = line.split(",")
        if len(f) > istot and f[isv] not in ("FRONTEND", "BACKEND"):
            out[(f[ipx], f[isv])] = (f[ist], int(f[istot] or 0))
    return out


def server_down(sample, integ, target):
    """Whether integration integ's HAProxy shows target's server taken
    out in this sample: DOWN for a check, not UP (MAINT) for a leader."""
    status = sample["stats"][integ["haproxy"]][integ["server"](target)][0]
    return status.startswith("DOWN") if integ["kind"] == "check" else not status.startswith("UP")


def agent_batch():
    return [i for i in INTEGRATIONS if i["batch"] == "agent"]


def baseline_batch():
    return [i for i in INTEGRATIONS if i["batch"] == "baseline"]


class Node:
    """One PostgreSQL server (database "app", the BDR 1/2 emulation) and
    the TCP proxy on its path: "monitor" (agents, classic checker,
    pgsql-check) and "traffic" (HAProxy's clients, black-hole rounds)."""

    def __init__(self, reg, name, hostname, pw, super_pw):
        self.name = name
        pg = PgServer(reg, name, pglogical=False, extra_conf={"max_connections": 200}).init()
        # HAProxy's pgsql-check accepts AuthenticationOk or a password
        # request, not SCRAM's SASL: its role gets trust, the others keep
        # scram-sha-256
        hba = os.path.join(pg.datadir, "pg_hba.conf")
        with open(hba) as f:
            text = f.read()
        with open(hba, "w") as f:
            f.write("host all haproxy_check 127.0.0.1/32 trust\n" + text)
        pg.start()
        pg.create_database("app")
        pg.run_file(os.path.join(FIXTURES_DIR, "bdr1_emulation.sql"), dbname="app")
        # the classic query looks for the machine's host name
        pg.sql("SELECT bdr.emulation_setup(%s)", (hostname,), dbname="app")
        pg.apply_grants("bdr", dbname="app", password=pw)
        pg.set_password(super_pw, role="postgres")
        pg.sql("CREATE ROLE haproxy_check LOGIN")
        pg.create_database("haproxy_check")
        self.pg = pg
        self.mon_port, self.traffic_port = free_port(), free_port()
        self.proxy = TcpProxy(pg.port, {"monitor": self.mon_port, "traffic": self.traffic_port})
        reg.add(self.proxy)
        self.pid = None
        self.kids = []

    def inject(self, fault):
        """Inject the fault; returns its time (time.monotonic())."""
        pid = self.pg.postmaster_pid()
        if pid is None:
            raise RuntimeError(f"{self.name} not running before the {fault}")
        self.pid, self.kids = pid, process_tree(pid)
        t0 = time.monotonic()
        if fault == "crash":
            # the postmaster alone: its backends notice and exit on their own
            os.kill(pid, signal.SIGKILL)
        elif fault == "shutdown":
            os.kill(pid, signal.SIGINT)
        elif fault == "hang":
            # the postmaster and every child known, in one go; then any
            # child forked meanwhile
            stopped = [pid] + self.kids
            for p in stopped:
                signal_quiet(p, signal.SIGSTOP)
            while True:
                late = [k for k in process_tree(pid) if k not in stopped]
                if not late:
                    break
                for k in late:
                    signal_quiet(k, signal.SIGSTOP)
                stopped += late
            self.pg._paused = stopped      # PgServer.resume() sends them SIGCONT
        elif fault == "blackhole":
            self.proxy.black_hole()
        self.verify(fault)
        return t0

    def verify(self, fault):
        """The fault is in place: the postmaster dead (crash) or stopped
        (hang), the proxy silent (black-hole). A clean shutdown is under way
        once the postmaster has the signal: it stops accepting at once."""
        def injected():
            state = proc_state(self.pid)
            return {"crash": state in (None, "Z"), "shutdown": True, "hang": state == "T",
                    "blackhole": self.proxy.blackholed}[fault]
        deadline = time.monotonic() + 2
        while not injected() and time.monotonic() < deadline:
            time.sleep(0.001)
        if not injected():
            raise RuntimeError(f"the {fault} of {self.name} was not injected "
                               f"(postmaster state {proc_state(self.pid)})")

    def restore(self, fault):
        pg, pid = self.pg, self.pid
        if fault in ("crash", "shutdown"):
            if fault == "crash":
                # what survived the postmaster (it exits on its own)
                for kid in self.kids:
                    if proc_state(kid) not in (None, "Z"):
                        os.kill(kid, signal.SIGKILL)
            wait_for(lambda: all(proc_state(p) in (None, "Z") for p in [pid] + self.kids), 30,
                     desc=f"{self.name}'s processes to exit")
            reap([pid] + self.kids)
            for f in (os.path.join(pg.datadir, "postmaster.pid"),
                      os.path.join(pg.sockdir, f".s.PGSQL.{pg.port}.lock")):
                if os.path.exists(f):
                    os.unlink(f)
            pg.start()
        elif fault == "hang":
            pg.resume()
        elif fault == "blackhole":
            self.proxy.restore()


def make_nodes(reg, names, hostname, pw, super_pw):
    out, errors = {}, []

    def make(name):
        try:
            out[name] = Node(reg, name, hostname, pw, super_pw)
        except Exception as e:  # noqa: BLE001 - raised below
            errors.append(e)
    threads = [threading.Thread(target=make, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return out


class AgentBatch:
    """httpchk, agent-check and SPOE (and any "agent" integration) on
    node1..node3, one fault at a time on the write leader."""

    def __init__(self, reg, n, hostname, pw, super_pw):
        self.reg, self.n = reg, n
        self.hostname, self.pw, self.super_pw = hostname, pw, super_pw
        self.records, self.gaps, self.uncertainty = [], [], []
        self.discarded = 0
        self.haproxies = {}
        reg.add(self)

    def setup(self):
        self.nodes = make_nodes(self.reg, NODES, self.hostname, self.pw, self.super_pw)
        # one agent per node, as httpchk.cfg and agent-check.cfg expect
        self.agents = {}
        for name in NODES:
            http, agent = free_port(), free_port()
            a = Agent(self.reg, [
                ("agent", dict(AGENT_SETTINGS, http_listen=f"127.0.0.1:{http}",
                               agent_listen=f"127.0.0.1:{agent}", log_level="warning")),
                ("postgresql", {"host": "127.0.0.1", "port": self.nodes[name].mon_port,
                                "dbname": "app", "user": "pgbdr_monitor", "password": self.pw,
                                "name": name, "flavor": "bdr"}),
            ], name=f"agent-{name}", port=http)
            a.agent_port = agent
            self.agents[name] = a.start()
        # the central agent for SPOE: every node, the write leader. No
        # handover gap (one agent answers every routing decision, so no
        # HAProxy can see two leaders) and no return of the preferred
        # node: the role moves only when its holder fails.
        self.spoe_port = free_port()
        sections = [("agent", dict(AGENT_SETTINGS, spoe_listen=f"127.0.0.1:{self.spoe_port}",
                                   leader_handover="0s", leader_return_delay="1d",
                                   log_level="warning"))]
        for i, name in enumerate(NODES, 1):
            sections.append((f"node.{name}", {
                "dsn": f"host=127.0.0.1 port={self.nodes[name].mon_port} dbname=app "
                       f"user=pgbdr_monitor password={self.pw}",
                "flavor": "bdr", "priority": 100 * i}))
        self.central = Agent(self.reg, sections, name="agent-central").start()
        for name in NODES:
            self.agents[name].wait_state(name, "ready", 30)
            self.central.wait_state(name, "ready", 30)
        wait_for(lambda: self.leader() == "node1", 30, desc="node1 leads")

    def cleanup(self):
        for hp in self.haproxies.values():
            hp.cleanup()

    def start_haproxies(self, via_proxy):
        """One HAProxy per integration, the shipped examples configured only
        by their environment variables; client traffic straight to
        PostgreSQL, or through the proxies (black-hole rounds)."""
        self.cleanup()
        self.haproxies, self.frontend = {}, {}
        addr = {n: f"127.0.0.1:{self.nodes[n].traffic_port if via_proxy else self.nodes[n].pg.port}"
                for n in NODES}
        nodes_env = {f"PGBDR_NODE{i}": addr[n] for i, n in enumerate(NODES, 1)}

        self.frontend["httpchk"] = free_port()
        env = dict(nodes_env, PGBDR_LISTEN=f"127.0.0.1:{self.frontend['httpchk']}")
        for i, n in enumerate(NODES, 1):
            env[f"PGBDR_NODE{i}_AGENT_PORT"] = self.agents[n].port
        self.haproxies["httpchk"] = HAProxy(self.reg, "httpchk.cfg", env)

        self.frontend["agentcheck"] = free_port()
        env = dict(nodes_env, PGBDR_LISTEN=f"127.0.0.1:{self.frontend['agentcheck']}")
        for i, n in enumerate(NODES, 1):
            env[f"PGBDR_NODE{i}_AGENT_PORT"] = self.agents[n].agent_port
        self.haproxies["agentcheck"] = HAProxy(self.reg, "agent-check.cfg", env)

        self.frontend["spoe"] = free_port()
        env = dict(nodes_env, PGBDR_PG_LISTEN=f"127.0.0.1:{self.frontend['spoe']}",
                   PGBDR_SPOE_CONF=os.path.join(HAPROXY_EXAMPLES, "pgbdr-spoe.conf"),
                   PGBDR_SPOE_AGENT=f"127.0.0.1:{self.spoe_port}")
        self.haproxies["spoe"] = HAProxy(self.reg, "spoe-tcp.cfg", env)

        self.frontend["lua"] = free_port()
        lua_map = os.path.join(self.reg.mkdtemp("lua-map"), "pgbdr.map")
        open(lua_map, "w").close()      # the script's map must exist
        env = dict(nodes_env, PGBDR_WRITE_LISTEN=f"127.0.0.1:{self.frontend['lua']}",
                   PGBDR_READ_LISTEN=f"127.0.0.1:{free_port()}",
                   PGBDR_AGENTS=f"127.0.0.1:{self.central.port}", PGBDR_MAP=lua_map,
                   PGBDR_LUA_SCRIPT=os.path.join(HAPROXY_EXAMPLES, "pgbdr.lua"))
        self.haproxies["lua"] = HAProxy(self.reg, "lua-tcp.cfg", env)
        for hp in self.haproxies.values():
            r = hp.check_config()
            if r.returncode != 0:
                raise RuntimeError(f"haproxy -c {hp.cfg}: {r.stdout}{r.stderr}")
            hp.start()

    # -- observing ------------------------------------------------------------------
    def leader(self):
        code, body = http_code(self.central.port, "/status")
        if code != 200:
            return None
        for node in json.loads(body)["nodes"]:
            if node.get("write_leader"):
                return node["name"]
        return ""

    def all_up(self, name):
        """Every integration sees name UP (a finished check, not 'UP 1/2')."""
        for integ in agent_batch():
            if integ["kind"] != "check":
                continue
            st = stats(self.haproxies[integ["haproxy"]]).get(integ["server"](name), ("?", 0))[0]
            if st != "UP":
                return False
        return http_code(self.agents[name].port)[0] == 200

    def leader_servers_up(self, lead):
        """The "leader" integrations show lead's server UP (lifted)."""
        return all(stats(self.haproxies[i["haproxy"]]).get(i["server"](lead), ("?", 0))[0] == "UP"
                   for i in agent_batch() if i["kind"] == "leader")

    def sample(self, target, probe, socks):
        t = time.monotonic()
        s = {"t": t, "stats": {k: stats(hp) for k, hp in self.haproxies.items()}}
        s["node_code"] = http_code(self.agents[target].port)[0]
        code, body = http_code(self.central.port, "/status")
        s["leader"] = None
        if code == 200:
            s["leader"] = next((n["name"] for n in json.loads(body)["nodes"]
                                if n.get("write_leader")), "")
        if probe:
            # the previous probes have had a tick to be routed: close them, open new ones
            for c in socks:
                c.close()
            socks.clear()
            for integ in agent_batch():
                if integ["traffic"]:
                    c = socket.socket()
                    c.setblocking(False)
                    c.connect_ex(("127.0.0.1", self.frontend[integ["traffic"]]))
                    socks.append(c)
        return s

    def one_fault(self, fault, index):
        # the target: the write leader, UP everywhere, with the other
        # active node UP everywhere too (somewhere healthy to go)
        def ready():
            lead = self.leader()
            if lead not in ACTIVE:
                return False
            other = ACTIVE[1 - ACTIVE.index(lead)]
            return lead if (self.all_up(lead) and self.all_up(other) and
                            self.leader_servers_up(lead)) else False
        target = wait_for(ready, 90, interval=0.1, desc="a leader UP everywhere")
        samples, socks = [], []
        end_baseline = time.monotonic() + 0.2
        tick = 0
        while time.monotonic() < end_baseline:
            samples.append(self.sample(target, tick % 2 == 0, socks))
            tick += 1
            time.sleep(max(0, SAMPLE_MS / 1000 - (time.monotonic() - samples[-1]["t"])))
        node = self.nodes[target]
        t0 = node.inject(fault)
        deadline = t0 + FAULT_DEADLINE_S
        seen_at = None      # when every change had shown up in the samples
        next_eval = 0.0
        seen = [False, False]
        res = None
        while time.monotonic() < deadline:
            s = self.sample(target, tick % 2 == 0, socks)
            samples.append(s)
            tick += 1
            seen[0] = seen[0] or s["node_code"] != 200
            seen[1] = seen[1] or s["leader"] not in (target, None)
            if seen_at is None and all(seen) and all(
                    server_down(s, i, target) for i in agent_batch() if i["kind"] != "route"):
                seen_at = s["t"]
            # the full evaluation once the traffic has had time to settle
            if seen_at is not None and s["t"] - seen_at >= SETTLE_S and s["t"] >= next_eval:
                res = self.evaluate(samples, t0, target)
                if res["complete"]:
                    break
                next_eval = s["t"] + 0.5
            time.sleep(max(0, SAMPLE_MS / 1000 - (time.monotonic() - s["t"])))
        for c in socks:
            c.close()
        node.restore(fault)
        res = self.evaluate(samples, t0, target)
        if not res["complete"]:
            raise RuntimeError(f"{fault} #{index + 1} of {target}: not every integration saw it "
                               f"within {FAULT_DEADLINE_S} s: {res['missing']}")
        if res["uncertainty"] * 1000 > MAX_EVENT_GAP_MS:
            # this machine stalled the sampling loop just then: measure again
            log(f"   {fault:9s} #{index + 1:<2d} {target}: discarded, an event was seen "
                f"{res['uncertainty'] * 1000:.0f} ms after the sample before it")
            self.discarded += 1
            if self.discarded > MAX_DISCARDED + 2 * self.n:
                raise RuntimeError(f"{self.discarded} faults discarded for sampling gaps: "
                                   "the samples are too sparse for the figures")
            return False
        ts = [x["t"] for x in samples if x["t"] >= t0]
        self.gaps += [(b - a) * 1000 for a, b in zip(ts, ts[1:])]
        self.uncertainty.append(res["uncertainty"] * 1000)
        self.records.append({"fault": fault, "target": target, "events": res["events"]})
        log(f"   {fault:9s} #{index + 1:<2d} {target}: " + ", ".join(
            f"{k} {v * 1000:.0f}" for k, v in sorted(res["events"].items())) + " ms")
        return True

    def evaluate(self, samples, t0, target):
        """The events of one fault, in seconds after t0."""
        after = [s for s in samples if s["t"] >= t0]
        before = [s for s in samples if s["t"] < t0]
        ev = {}
        # each event's uncertainty: the time since the sample before the one that saw it
        unc = {}
        prev_t = {id(b): a["t"] for a, b in zip(samples, samples[1:])}

        def first(pred):
            s = next((s for s in after if pred(s)), None)
            if s is None:
                return None
            unc[s["t"] - t0] = s["t"] - prev_t.get(id(s), s["t"])
            return s["t"] - t0
        ev["node-agent verdict"] = first(lambda s: s["node_code"] != 200)
        ev["central-agent verdict"] = first(lambda s: s["leader"] not in (target, None))
        for integ in agent_batch():
            name = integ["name"]
            if integ["kind"] != "route":
                ev[f"{name} down"] = first(lambda s: server_down(s, integ, target))
            if integ["traffic"] and before:
                # session counts per server of this integration's HAProxy
                def stot(s, node):
                    return s["stats"][integ["haproxy"]][integ["server"](node)][1]
                seq = [before[-1]] + after
                last_failed = None
                for a, b in zip(seq, seq[1:]):
                    if stot(b, target) > stot(a, target):
                        last_failed = b["t"]
                healthy = None
                for a, b in zip(seq, seq[1:]):
                    if last_failed is not None and b["t"] <= last_failed:
                        continue
                    if any(stot(b, n) > stot(a, n) for n in NODES if n != target):
                        healthy = b["t"] - t0
                        unc[healthy] = b["t"] - a["t"]
                        break
                if healthy is not None and after[-1]["t"] - t0 - healthy >= SETTLE_S:
                    ev[f"{name} traffic"] = healthy
                    if integ["kind"] == "route":
                        # its "down": the last new connection routed to the failed node
                        ev[f"{name} down"] = max(0.0, last_failed - t0) if last_failed else 0.0
        needed = ["node-agent verdict", "central-agent verdict"]
        needed += [f"{i['name']} down" for i in agent_batch()]
        needed += [f"{i['name']} traffic" for i in agent_batch() if i["traffic"]]
        missing = [k for k in needed if ev.get(k) is None]
        return {"complete": not missing, "missing": missing,
                "events": {k: v for k, v in ev.items() if v is not None},
                "uncertainty": max([unc.get(v, 0.0) for v in ev.values() if v is not None],
                                   default=0.0)}

    def false_downs(self):
        """DOWN transitions of node3, which is never faulted."""
        out = {}
        for integ in agent_batch():
            if integ["kind"] == "check":
                row = self.haproxies[integ["haproxy"]].server(*integ["server"]("node3"))
                out[integ["name"]] = int(row.get("chkdown") or 0)
        return out

    def run(self):
        self.setup()
        self.false = {}
        for fault in FAULTS:
            self.start_haproxies(via_proxy=(fault == "blackhole"))
            log(f"== failover: {FAULT_TEXT[fault]}, {self.n} faults (agent integrations)")
            done = 0
            while done < self.n:
                done += self.one_fault(fault, done)
            for k, v in self.false_downs().items():
                self.false[k] = self.false.get(k, 0) + v


class BaselineBatch:
    """The classic checker under xinetd (the seed's HAProxy settings) and
    HAProxy's pgsql-check, on nodes of their own, each node faulted in
    its own thread (a classic DOWN, then UP again, takes 10-25 s)."""

    def __init__(self, reg, n, hostname, pw, super_pw, nodes=4):
        self.reg, self.n = reg, n
        self.names = [f"base{i}" for i in range(1, nodes + 1)]
        self.hostname, self.pw, self.super_pw = hostname, pw, super_pw
        self.records, self.samples, self.uncertainty = [], [], []
        self.stop = threading.Event()
        self.error = None
        reg.add(self)

    def setup(self):
        self.nodes = make_nodes(self.reg, self.names, self.hostname, self.pw, self.super_pw)
        self.start_classic()
        base = self.reg.mkdtemp("haproxy-baseline")
        cfg = os.path.join(base, "baseline.cfg")
        lines = ["global", '    stats socket "${PGBDR_STATS_SOCKET}" mode 600 level admin',
                 "defaults", "    mode tcp", "    timeout connect 3s",
                 "    timeout client 30m", "    timeout server 30m",
                 "listen classic", f"    bind 127.0.0.1:{free_port()}", "    balance leastconn",
                 "    option httpchk"]
        for n in self.names:
            lines.append(f"    server {n} 127.0.0.1:{self.nodes[n].pg.port} "
                         f"check port {self.classic_port[n]} {SEED}")
        # pgsql-check: the shipped httpchk.cfg timings, the agents' timeout
        lines += ["listen pgsqlcheck", f"    bind 127.0.0.1:{free_port()}",
                  "    balance leastconn", "    option pgsql-check user haproxy_check",
                  f"    timeout check {AGENT_TIMEOUT_MS}ms"]
        for n in self.names:
            lines.append(f"    server {n} 127.0.0.1:{self.nodes[n].mon_port} "
                         f"check inter {SHIPPED['httpchk_inter_ms']:.0f} "
                         f"fastinter {SHIPPED['httpchk_fastinter_ms']:.0f} rise 2 fall 2")
        with open(cfg, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.hp = HAProxy(self.reg, cfg, {})
        r = self.hp.check_config()
        if r.returncode != 0:
            raise RuntimeError(f"haproxy -c {cfg}: {r.stdout}{r.stderr}")
        self.hp.start()

    def start_classic(self):
        """xinetd with one classic service per node (bench/classic/)."""
        base = self.reg.mkdtemp("classic")
        script = os.path.join(base, "check.py")
        with open(os.path.join(BENCH, "classic", "check.py")) as f, open(script, "w") as g:
            g.write(f.read())
        os.chmod(script, 0o755)
        with open(os.path.join(BENCH, "classic", "pgsqlchk.xinetd.in")) as f:
            template = f.read()
        defaults, _, service = template.partition("service pgsqlchk")
        text = defaults.replace("@LOG@", os.path.join(base, "xinetd.log"))
        self.classic_port = {}
        for name in self.names:
            ini = os.path.join(base, f"{name}.ini")
            with open(ini, "w") as f:
                f.write(f"[postgresql]\nhost=127.0.0.1\nport={self.nodes[name].mon_port}\n"
                        f"database=app\nuser=postgres\npassword={self.super_pw}\n")
            os.chmod(ini, 0o644)      # xinetd runs the script as nobody
            self.classic_port[name] = free_port()
            text += (f"service pgsqlchk_{name}" + service
                     .replace("@PORT@", str(self.classic_port[name]))
                     .replace("@SERVER@", script).replace("@INI@", ini))
        conf = os.path.join(base, "xinetd.conf")
        with open(conf, "w") as f:
            f.write(text)
        self.xinetd_log = open(os.path.join(base, "xinetd.stderr"), "w")
        self.xinetd = subprocess.Popen(["xinetd", "-dontfork", "-f", conf, "-pidfile",
                                        os.path.join(base, "xinetd.pid")],
                                       stdout=self.xinetd_log, stderr=subprocess.STDOUT)
        for name in self.names:
            wait_for(lambda: http_code(self.classic_port[name], timeout=10)[0] == 200, 30,
                     interval=0.2, desc=f"classic checker answers 200 for {name}")

    def cleanup(self):
        self.stop.set()
        if getattr(self, "xinetd", None) and self.xinetd.poll() is None:
            self.xinetd.terminate()
            try:
                self.xinetd.wait(10)
            except subprocess.TimeoutExpired:
                self.xinetd.kill()
                self.xinetd.wait()
            self.xinetd_log.close()

    def sampler(self):
        while not self.stop.is_set():
            t = time.monotonic()
            self.samples.append((t, stats(self.hp)))
            time.sleep(max(0, SAMPLE_MS / 1000 - (time.monotonic() - t)))

    def status(self, name):
        st = self.samples[-1][1]
        return [st[i["server"](name)][0] for i in baseline_batch()]

    def node_worker(self, name, faults):
        node = self.nodes[name]
        rnd = random.Random(name)
        for fault in faults:
            wait_for(lambda: all(x == "UP" for x in self.status(name)), 90, interval=0.05,
                     desc=f"{name} UP for the baselines")
            # away from any phase of the checks
            time.sleep(rnd.uniform(0, 1.0))
            t0 = node.inject(fault)
            try:
                wait_for(lambda: all(x.startswith("DOWN") for x in self.status(name)),
                         FAULT_DEADLINE_S, interval=0.05,
                         desc=f"the baselines to see the {fault} of {name}")
            finally:
                node.restore(fault)
            self.records.append({"fault": fault, "target": name, "t0": t0})

    def run(self):
        try:
            self.setup()
            sampler = threading.Thread(target=self.sampler, daemon=True)
            sampler.start()
            wait_for(lambda: self.samples, 10, desc="first baseline sample")
            # the faults, interleaved by type, dealt round-robin to the nodes
            plan = [f for _ in range(self.n) for f in FAULTS]
            workers, errors = [], []

            def work(name, faults):
                try:
                    self.node_worker(name, faults)
                except Exception as e:  # noqa: BLE001 - raised below
                    errors.append(e)
            for k, name in enumerate(self.names):
                t = threading.Thread(target=work, args=(name, plan[k::len(self.names)]))
                t.start()
                workers.append(t)
            for t in workers:
                t.join()
            self.stop.set()
            sampler.join(5)
            if errors:
                raise errors[0]
            self.evaluate()
        except Exception as e:  # noqa: BLE001 - the caller raises it
            self.error = e

    def evaluate(self):
        for rec in self.records:
            rec["events"] = {}
            for integ in baseline_batch():
                key = integ["server"](rec["target"])
                k = next((k for k, (t, st) in enumerate(self.samples)
                          if t >= rec["t0"] and st[key][0].startswith("DOWN")), None)
                if k is None or k == 0:
                    raise RuntimeError(f"{integ['name']} never showed the {rec['fault']} of "
                                       f"{rec['target']} in the samples")
                rec["events"][f"{integ['name']} down"] = self.samples[k][0] - rec["t0"]
                self.uncertainty.append((self.samples[k][0] - self.samples[k - 1][0]) * 1000)
        ts = [t for t, _ in self.samples]
        self.gaps = [(b - a) * 1000 for a, b in zip(ts, ts[1:])]


class Failover:
    def __init__(self, reg, faults_per_type, agent_bin=None):
        self.reg = reg
        self.n = faults_per_type
        if agent_bin:
            os.environ["PGBDR_AGENT"] = agent_bin

    def run(self):
        hostname, pw, super_pw = socket.gethostname(), new_password(), new_password()
        log("== failover: PostgreSQL nodes, TCP proxies, agents, the classic checker")
        base = BaselineBatch(self.reg, self.n, hostname, pw, super_pw)
        agents = AgentBatch(self.reg, self.n, hostname, pw, super_pw)
        # the baselines run on their own nodes while the agent integrations are measured
        bt = threading.Thread(target=base.run)
        bt.start()
        try:
            agents.run()
        finally:
            bt.join()
        if base.error:
            raise base.error
        log("== failover: the baselines (classic checker, pgsql-check)")
        for rec in base.records:
            log(f"   {rec['fault']:9s} {rec['target']}: " + ", ".join(
                f"{k} {v * 1000:.0f}" for k, v in sorted(rec["events"].items())) + " ms")
        return self.summary(agents, base)

    def summary(self, agents, base):
        records = agents.records + base.records
        gaps = {"agent": agents.gaps, "baseline": base.gaps}
        out = {"faults_per_type": self.n, "agent_settings": AGENT_SETTINGS,
               "shipped": SHIPPED, "seed": SEED, "false_downs": agents.false,
               "baseline_nodes": len(base.names), "sampling": {}, "stats": {}}
        unc = {"agent": agents.uncertainty, "baseline": base.uncertainty}
        out["discarded"] = agents.discarded
        for k, g in gaps.items():
            p50, p99 = percentile(g, 50), percentile(g, 99)
            u99 = percentile(unc[k], 99)
            out["sampling"][k] = {"p50_ms": p50, "p99_ms": p99, "samples": len(g) + 1,
                                  "event_p99_ms": u99, "event_max_ms": max(unc[k])}
            if p50 is None or p50 > MAX_GAP_P50_MS or p99 > MAX_GAP_P99_MS \
                    or u99 > MAX_EVENT_GAP_MS:
                raise RuntimeError(f"{k} samples too sparse: gap p50 {p50:.1f} ms, p99 "
                                   f"{p99:.1f} ms, before an event p99 {u99:.1f} ms (need ≤ "
                                   f"{MAX_GAP_P50_MS}, ≤ {MAX_GAP_P99_MS}, ≤ {MAX_EVENT_GAP_MS})")
        for fault in FAULTS:
            recs = [r for r in records if r["fault"] == fault]
            keys = sorted({k for r in recs for k in r["events"]})
            out["stats"][fault] = {}
            for k in keys:
                vals = [r["events"][k] for r in recs if k in r["events"]]
                if len(vals) < self.n:
                    raise RuntimeError(f"{fault}: {k} measured {len(vals)} times of {self.n}")
                out["stats"][fault][k] = {"n": len(vals), "p50": percentile(vals, 50),
                                          "p99": percentile(vals, 99)}
        return out


def main():
    quick = "--quick" in sys.argv[1:]
    # a SIGTERM ends the run through the registry's cleanup
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(2))
    reg = Registry()
    try:
        n = int(os.environ.get("FAILOVER_N", 3 if quick else 20))
        out = Failover(reg, n, os.environ.get("PGBDR_AGENT")).run()
    finally:
        reg.cleanup()
    print(json.dumps({k: v for k, v in out.items() if k != "records"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
