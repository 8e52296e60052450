#!/usr/bin/python3
"""pgbdr-agent demo: a real three-node pglogical multi-master cluster on
loopback, one pgbdr-agent per node plus a central one, and HAProxy in
front using all three of the agent's interfaces (httpchk, agent-check,
SPOE). A scripted scenario (leader failure, replication lag,
maintenance, recovery) is played, and what HAProxy sees is printed as a
timeline. Exit status 0 only if every step was observed in HAProxy.

Run it through ./demo/run (installs packages, builds the agent). Needs
root: PostgreSQL runs as the OS user postgres, the agents as nobody.

    demo/demo.py [--agent PATH] [--keep] [--steps 1,2,3,4,5]
    demo/demo.py --stop        stop what --keep left running

The processes, temp dirs and config files come from the integration
test harness (tests/integration/harness.py).
"""

import argparse
import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import harness  # noqa: E402
from harness import Agent, HAProxy, PgServer, Registry, free_port, wait_for  # noqa: E402,F401

NODES = ("node1", "node2", "node3")
PRIORITY = {"node1": 10, "node2": 20, "node3": 30}
DB = "app"
DEMO_USER = "demo"
DEMO_PASSWORD = "demo"
HAPROXY_CFG = os.path.join(HERE, "haproxy-demo.cfg")
SPOE_CONF = os.path.join(ROOT, "haproxy-examples", "pgbdr-spoe.conf")
STATE_FILE = os.path.join(tempfile.gettempdir(), "pgbdr_demo.json")

# Per-node agents: probe twice a second; replication lag above 4MB
# lowers the weight linearly down to 10% at 64MB, beyond which the node
# is down. A node's lag is its own staleness, read in its providers'
# slots for it, so each node's agent watches its peers too.
AGENT_TIMING = {"interval": "500ms", "timeout": "2s"}
DRAIN_LAG_MB, MAX_LAG_MB, MIN_WEIGHT = 4, 64, 10
POLICY = {"drain_lag": f"{DRAIN_LAG_MB}MB", "max_lag": f"{MAX_LAG_MB}MB",
          "min_weight": MIN_WEIGHT}
LAG_TARGET = 32 * 1024 * 1024       # what step 3 writes: weight ~ 55%
LEADER_RETURN_DELAY = 3             # seconds
LEADER_HANDOVER = 1                 # seconds

POOLS = (("pg_read", "read"), ("pg_weighted", "weighted"), ("pg_write", "write"))

T0 = time.monotonic()
_print_lock = threading.Lock()


def say(kind, text):
    with _print_lock:
        print(f"[{time.monotonic() - T0:6.1f}s] {kind:<8} {text}", flush=True)


def banner(text):
    with _print_lock:
        print(f"\n=== {text}", flush=True)


def shows(status, want):
    """HAProxy's status column says want: "DOWN" matches "DOWN (agent)"
    too, but not the transitional "DOWN 1/2" (going up)."""
    return status == want or status.startswith(want + " (")


def expected_weight(lag):
    """The agent's weight for this lag under POLICY (evaluate.c, weight_for_lag)."""
    drain, top, floor = DRAIN_LAG_MB * 1048576, MAX_LAG_MB * 1048576, MIN_WEIGHT
    if lag <= drain:
        return 100
    if lag >= top:
        return floor
    return round(100 - (100 - floor) * (lag - drain) / (top - drain))


class StepFailed(Exception):
    pass


class Interrupted(BaseException):
    pass


class DemoRegistry(Registry):
    """The harness's Registry, with every temp dir under one root
    (/tmp/pgbdr_demo.<random>): one thing to remove, and out of the way of
    the test suite's /tmp/pgbdr-* dirs."""

    def __init__(self):
        super().__init__()
        self.root = tempfile.mkdtemp(prefix="pgbdr_demo.", dir=tempfile.gettempdir())
        os.chmod(self.root, 0o755)

    def mkdtemp(self, prefix):
        d = tempfile.mkdtemp(prefix=f"{prefix}-", dir=self.root)
        os.chmod(d, 0o755)
        self.dirs.append(d)
        return d

    def cleanup(self):
        errors = super().cleanup()
        if not self.keep and self.root:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
        return errors


# --------------------------------------------------------------------------
# What HAProxy sees
# --------------------------------------------------------------------------

class Observer:
    """Reads HAProxy's stats socket and connects through its write
    frontend; prints every change it notices, whoever asked."""

    def __init__(self, hap, write_port):
        self.hap = hap
        self.write_port = write_port
        self.lock = threading.Lock()
        self.last = {}           # (pool, node) -> (status, weight)
        self.last_write = None
        self.stop_event = threading.Event()
        self.thread = None

    # -- HAProxy stats --------------------------------------------------
    def servers(self):
        """{(pool, node): row} for the demo's servers; pool is read,
        weighted or write (the write pool is the pg_nodeN backends)."""
        out = {}
        for row in self.hap.show_stat():
            px, sv = row["pxname"], row["svname"]
            if sv in ("FRONTEND", "BACKEND"):
                continue
            if px in ("pg_read", "pg_weighted"):
                out[(px[3:], sv)] = row
            elif px.startswith("pg_node"):
                out[("write", sv)] = row
        self._note(out)
        return out

    def _note(self, rows):
        with self.lock:
            for key in sorted(rows):
                row = rows[key]
                if row["check_status"].lstrip("* ") in ("INI", "") and row["status"] == "UP":
                    continue     # not checked yet
                if "/" in row["status"]:
                    continue     # "UP 1/2": on its way, per rise/fall
                now = (row["status"], row["weight"])
                before = self.last.get(key)
                if before == now:
                    continue
                self.last[key] = now
                if before is None:
                    continue     # the initial picture is printed as a table
                pool, node = key
                if before[0] != now[0]:
                    why = self._why(pool, row)
                    say("haproxy", f"{pool:<8} {node}  {before[0]} -> {now[0]}"
                                   + (f"   ({why})" if why else ""))
                elif pool == "weighted":
                    say("haproxy", f"{pool:<8} {node}  weight {before[1]} -> {now[1]}")

    @staticmethod
    def _why(pool, row):
        if pool == "weighted":
            said = row.get("last_agt", "").replace("via agent : ", "")
            return "" if said in ("", "up") else "agent: " + said
        chk = row.get("check_status", "").lstrip("* ")
        desc = row.get("last_chk", "")
        return f"{chk} {desc}".strip()

    # -- the write frontend --------------------------------------------
    def write_probe(self):
        """Where a new connection through the SPOE write frontend lands:
        ('node2', port) or (None, why)."""
        import psycopg2
        try:
            conn = psycopg2.connect(host="127.0.0.1", port=self.write_port, dbname=DB,
                                    user=DEMO_USER, password=DEMO_PASSWORD,
                                    connect_timeout=3, sslmode="disable",
                                    application_name="pgbdr-demo")
        except psycopg2.OperationalError as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else "refused"
            if "closed the connection" in msg:
                msg = "refused by HAProxy (no write leader)"
            return self._note_write((None, msg))
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT current_setting('cluster_name'), inet_server_port()")
                name, port = cur.fetchone()
        finally:
            conn.close()
        return self._note_write((name, port))

    def _note_write(self, where):
        with self.lock:
            if where != self.last_write:
                self.last_write = where
                name, detail = where
                if name:
                    say("write", f"new connections via :{self.write_port} land on {name}"
                                 f" (inet_server_port {detail})")
                else:
                    say("write", f"new connections via :{self.write_port}: {detail}")
        return where

    # -- background -----------------------------------------------------
    def start(self):
        def loop():
            n = 0
            while not self.stop_event.wait(0.25):
                try:
                    self.servers()
                    n += 1
                    if n % 2 == 0:
                        self.write_probe()
                except Exception:  # noqa: BLE001 - keep watching
                    pass
        self.thread = threading.Thread(target=loop, daemon=True)
        self.thread.start()

    def stop(self):
        self.stop_event.set()
        if self.thread:
            self.thread.join(5)

    def table(self):
        rows = self.servers()
        where = self.write_probe()
        with _print_lock:
            print(f"           {'read (httpchk /read)':<22}{'weighted (agent-check)':<26}"
                  f"write (SPOE -> pg_nodeN)")
            for node in NODES:
                r = rows.get(("read", node), {})
                w = rows.get(("weighted", node), {})
                x = rows.get(("write", node), {})
                lead = "  <- write leader" if where[0] == node else ""
                # HAProxy keeps the last weight of a DOWN or DRAIN server
                wst = w.get("status", "?")
                if wst == "UP":
                    wst = f"UP  weight {w.get('weight', '?'):>3}"
                print(f"  {node:<8} {r.get('status', '?'):<22}{wst:<26}"
                      f"{x.get('status', '?')}{lead}", flush=True)
            if not where[0]:
                print(f"  writes: {where[1]}", flush=True)


# --------------------------------------------------------------------------
# The cluster
# --------------------------------------------------------------------------

class Demo:
    def __init__(self, args):
        self.args = args
        self.reg = DemoRegistry()
        self.pg = {}
        self.agents = {}
        self.central = None
        self.hap = None
        self.obs = None
        self.ports = {}
        self.stopped_pids = []     # SIGSTOPped apply workers, resumed on exit
        self.results = []          # (step, ok, text)
        self.monitor_password = harness.new_password()
        self.dir = self.reg.mkdtemp("demo")

    # -- setup ------------------------------------------------------------
    def start_postgres(self):
        for name in NODES:
            pg = PgServer(self.reg, name, extra_conf={
                "cluster_name": f"'{name}'",
                # step 3 holds an apply worker for a while: the walsender
                # must not time it out meanwhile
                "wal_sender_timeout": "'5min'",
                "wal_keep_size": "'256MB'",
            })
            pg.init().start()
            self.pg[name] = pg
        say("setup", "PostgreSQL 15 + pglogical started: " +
            ", ".join(f"{n} :{p.port}" for n, p in self.pg.items()))

        for name, pg in self.pg.items():
            pg.create_database(DB)
            pg.sql(f"CREATE ROLE {DEMO_USER} LOGIN PASSWORD '{DEMO_PASSWORD}'")
            pg.sql("CREATE EXTENSION pglogical", dbname=DB)
            pg.sql("CREATE TABLE demo_events (id uuid PRIMARY KEY DEFAULT gen_random_uuid(),"
                   " note text, written_on text DEFAULT current_setting('cluster_name'),"
                   " at timestamptz DEFAULT now())", dbname=DB)
            pg.sql("CREATE TABLE demo_bulk (id uuid PRIMARY KEY DEFAULT gen_random_uuid(),"
                   " payload text)", dbname=DB)
            pg.sql(f"GRANT SELECT, INSERT ON demo_events, demo_bulk TO {DEMO_USER}", dbname=DB)
            pg.sql("SELECT pglogical.create_node(node_name := %s, dsn := %s)",
                   (name, pg.dsn_socket(DB)), dbname=DB)
            pg.sql("SELECT pglogical.replication_set_add_table('default', 'demo_events')",
                   dbname=DB)
            pg.sql("SELECT pglogical.replication_set_add_table('default', 'demo_bulk')",
                   dbname=DB)
            pg.apply_grants("pglogical", dbname=DB, password=self.monitor_password)

        for sub_name, sub in self.pg.items():
            for prov_name, prov in self.pg.items():
                if sub is prov:
                    continue
                sub.sql("SELECT pglogical.create_subscription(subscription_name := %s,"
                        " provider_dsn := %s, replication_sets := ARRAY['default'],"
                        " synchronize_structure := false, synchronize_data := false,"
                        " forward_origins := '{}')",
                        (f"{sub_name}_from_{prov_name}", prov.dsn_socket(DB)), dbname=DB)
        for name, pg in self.pg.items():
            wait_for(lambda pg=pg: self.all_subs_replicating(pg), 60,
                     desc=f"{name}'s subscriptions replicating")
        say("setup", "pglogical multi-master: every node subscribes to the other two "
                     "(6 subscriptions, forward_origins '{}'), all replicating")

        for name, pg in self.pg.items():
            note = f"hello from {name}"
            t = time.monotonic()
            pg.sql("INSERT INTO demo_events (note) VALUES (%s)", (note,), dbname=DB)
            others = [o for o in NODES if o != name]
            for o in others:
                wait_for(lambda o=o: self.has_row(o, note), 30,
                         desc=f"row from {name} on {o}")
            say("setup", f"replication: row inserted on {name} read on "
                         f"{' and '.join(others)} after {time.monotonic() - t:.1f}s")

    def all_subs_replicating(self, pg):
        rows = pg.sql("SELECT status FROM pglogical.show_subscription_status()", dbname=DB)
        return len(rows) == 2 and all(r[0] == "replicating" for r in rows)

    def has_row(self, node, note):
        return bool(self.pg[node].scalar("SELECT count(*) FROM demo_events WHERE note = %s",
                                         (note,), dbname=DB))

    def classic_section(self, pg):
        # the classic PgSQLBDRChecker keys; flavor detected (pglogical)
        return {"host": "127.0.0.1", "port": pg.port, "database": DB,
                "user": harness.MONITOR_ROLE, "password": self.monitor_password,
                "flavor": "auto"}

    def start_agents(self):
        for name, pg in self.pg.items():
            agent_port = free_port()
            maint = os.path.join(self.dir, f"maintenance-{name}")
            # its own node first: HAProxy's silent agent-check gets that one
            cfg = [
                ("agent", dict(AGENT_TIMING, agent_listen=f"127.0.0.1:{agent_port}",
                               maintenance_file=maint, agent_send_wait="50ms")),
                ("policy", dict(POLICY)),
            ] + [(f"node.{n}", self.classic_section(self.pg[n]))
                 for n in [name] + [p for p in NODES if p != name]]
            a = Agent(self.reg, cfg, name=f"agent-{name}")
            a.agent_port = agent_port
            a.maintenance_file = maint
            a.start()
            self.agents[name] = a
        spoe_port = free_port()
        cfg = [("agent", dict(AGENT_TIMING, spoe_listen=f"127.0.0.1:{spoe_port}",
                              leader_return_delay=f"{LEADER_RETURN_DELAY}s",
                              leader_handover=f"{LEADER_HANDOVER}s")),
               ("policy", dict(POLICY))]
        for name, pg in self.pg.items():
            cfg.append((f"node.{name}", dict(self.classic_section(pg), priority=PRIORITY[name])))
        self.central = Agent(self.reg, cfg, name="agent-central")
        self.central.spoe_port = spoe_port
        self.central.start()
        for name, a in self.agents.items():
            say("setup", f"pgbdr-agent for {name}: http :{a.port}, agent-check "
                         f":{a.agent_port}, as role {harness.MONITOR_ROLE} (not superuser)")
        say("setup", f"central pgbdr-agent: http :{self.central.port}, SPOE "
                     f":{spoe_port}, priorities node1 < node2 < node3")

    def start_haproxy(self):
        self.ports = {"read": free_port(), "weighted": free_port(), "write": free_port(),
                      "stats": free_port()}
        env = {
            "PGBDR_READ_PORT": self.ports["read"],
            "PGBDR_WEIGHTED_PORT": self.ports["weighted"],
            "PGBDR_WRITE_PORT": self.ports["write"],
            "PGBDR_STATS_PORT": self.ports["stats"],
            "PGBDR_SPOE_PORT": self.central.spoe_port,
            "PGBDR_SPOE_CONF": SPOE_CONF,
        }
        for i, name in enumerate(NODES, 1):
            env[f"PGBDR_NODE{i}_PG_PORT"] = self.pg[name].port
            env[f"PGBDR_NODE{i}_HTTP_PORT"] = self.agents[name].port
            env[f"PGBDR_NODE{i}_AGENT_PORT"] = self.agents[name].agent_port
        self.hap = HAProxy(self.reg, HAPROXY_CFG, env)
        r = self.hap.check_config()
        if r.returncode != 0:
            raise RuntimeError(f"haproxy -c failed:\n{r.stdout}{r.stderr}")
        self.hap.start()
        self.obs = Observer(self.hap, self.ports["write"])
        say("setup", f"HAProxy: read :{self.ports['read']} (httpchk), weighted "
                     f":{self.ports['weighted']} (agent-check), write :{self.ports['write']} "
                     f"(SPOE), stats http://127.0.0.1:{self.ports['stats']}/")

    # -- helpers for the steps --------------------------------------------
    def wait(self, desc, predicate, timeout):
        """Poll predicate until true; returns its value or raises StepFailed."""
        try:
            return wait_for(predicate, timeout, interval=0.2, desc=desc)
        except AssertionError as e:
            raise StepFailed(str(e).split(";")[0]) from None

    def status(self, pool, node):
        return self.obs.servers()[(pool, node)]["status"]

    def expect_status(self, wanted, timeout):
        """wanted: {(pool, node): status}; waits until HAProxy shows all."""
        def ok():
            rows = self.obs.servers()
            bad = {k: rows[k]["status"] for k, v in wanted.items()
                   if not shows(rows[k]["status"], v) or
                   rows[k]["check_status"].lstrip("* ") in ("INI", "")}
            self._missing = bad
            return not bad
        self._missing = {}
        try:
            wait_for(ok, timeout, interval=0.2)
        except AssertionError:
            miss = ", ".join(f"{p}/{n} is {s}, expected {wanted[(p, n)]}"
                             for (p, n), s in sorted(self._missing.items()))
            raise StepFailed(f"after {timeout}s HAProxy shows: {miss}") from None

    def expect_writes_on(self, node, timeout):
        def ok():
            return self.obs.write_probe()[0] == node
        try:
            wait_for(ok, timeout, interval=0.25)
        except AssertionError:
            name, detail = self.obs.last_write or (None, "?")
            raise StepFailed(f"after {timeout}s new write connections through HAProxy "
                             f"{'land on ' + name if name else 'are ' + detail}, "
                             f"expected {node}") from None

    def write_through_haproxy(self, note, expect_node, replicas):
        import psycopg2
        conn = psycopg2.connect(host="127.0.0.1", port=self.ports["write"], dbname=DB,
                                user=DEMO_USER, password=DEMO_PASSWORD, connect_timeout=3,
                                sslmode="disable")
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("INSERT INTO demo_events (note) VALUES (%s) "
                            "RETURNING written_on, inet_server_port()", (note,))
                on, port = cur.fetchone()
        finally:
            conn.close()
        t = time.monotonic()
        if on != expect_node:
            raise StepFailed(f"INSERT through the write frontend landed on {on}, "
                             f"expected {expect_node}")
        for r in replicas:
            self.wait(f"row on {r}", lambda r=r: self.has_row(r, note), 30)
        say("write", f"INSERT via :{self.ports['write']} landed on {on} (port {port}), "
                     f"read back on {' and '.join(replicas)} after {time.monotonic() - t:.1f}s")

    def agent_line(self, node):
        n = self.agents[node].node()
        lag = n.get("lag_bytes")
        lag = "unknown" if lag is None else f"{lag / 1048576:.1f}MB"
        return (f"agent {node}: {n['state']}, weight {n['weight']}%, lag {lag}"
                + (f", reason: {n['reason']}" if n.get("reason") else ""))

    def kick_subscriptions_from(self, provider):
        """pglogical retries a lost provider slowly (after 5s, then after
        about 80s): re-enable the subscriptions to it so that they
        reconnect now, as an operator would."""
        for name, pg in self.pg.items():
            if name == provider:
                continue
            sub = f"{name}_from_{provider}"
            status = pg.scalar("SELECT status FROM pglogical.show_subscription_status(%s)",
                               (sub,), dbname=DB)
            if status == "replicating":
                continue
            pg.sql("SELECT pglogical.alter_subscription_disable(%s, true)", (sub,), dbname=DB)
            pg.sql("SELECT pglogical.alter_subscription_enable(%s, true)", (sub,), dbname=DB)
            say("action", f"{name}: subscription {sub} was {status}; re-enabled it so that "
                          f"pglogical reconnects now instead of at its next retry")
        for name, pg in self.pg.items():
            self.wait(f"{name}'s subscriptions replicating",
                      lambda pg=pg: self.all_subs_replicating(pg), 30)
        say("check", "all 6 pglogical subscriptions replicating again")

    def node1_running(self):
        return self.pg["node1"].postmaster_pid() is not None

    # -- the steps ----------------------------------------------------------
    def step1(self):
        """Writes through HAProxy's SPOE write frontend land on node1 (the
        leader) and replicate to all."""
        self.expect_writes_on("node1", 20)
        self.write_through_haproxy("step 1: written through HAProxy", "node1",
                                   ["node2", "node3"])
        return "writes land on node1 and replicate to node2, node3"

    def step2(self):
        """Stop node1's postgres: node1 goes DOWN in every pool, node2
        becomes write leader after the handover gap."""
        say("action", "pg_ctl stop -m fast on node1 (the write leader)")
        t = time.monotonic()
        self.pg["node1"].stop()
        self.expect_status({(p, "node1"): "DOWN" for p in ("read", "weighted", "write")}, 20)
        say("check", f"node1 DOWN in all three pools {time.monotonic() - t:.1f}s after the stop")
        self.expect_writes_on("node2", 20)
        say("check", f"writes moved to node2 {time.monotonic() - t:.1f}s after the stop "
                     f"(handover gap {LEADER_HANDOVER}s: no write leader at all meanwhile)")
        self.expect_status({(p, n): "UP" for p in ("read", "weighted") for n in ("node2", "node3")},
                           10)
        self.write_through_haproxy("step 2: written while node1 is down", "node2", ["node3"])
        for n in ("node2", "node3"):
            say("agent", self.agent_line(n))
        return "node1 DOWN everywhere; node2 leads writes; node2, node3 keep serving"

    def apply_worker_pid(self, subscriber, provider):
        sub = f"{subscriber}_from_{provider}"
        return self.pg[subscriber].scalar(
            "SELECT a.pid FROM pg_stat_activity a, pglogical.subscription s"
            " WHERE s.sub_name = %s AND a.datname = current_database()"
            " AND a.backend_type = 'pglogical apply ' ||"
            "   (SELECT oid FROM pg_database WHERE datname = current_database()) || ':' || s.sub_id",
            (sub,), dbname=DB)

    def slot_lag(self, node):
        return self.pg[node].scalar(
            "SELECT coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)), 0)"
            " FROM pg_replication_slots WHERE plugin = 'pglogical_output' AND active",
            dbname=DB)

    def step3(self):
        """Replication lag: node3 stops applying what node2 sends, node2's
        slot for node3 falls behind: node3 is stale and its weight drops,
        while node2, which has every change, stays at 100. A node's lag is
        read in all its providers' slots, so node1 must be back first."""
        if not self.node1_running():
            say("action", "pg_ctl start on node1 (node3's lag is read in every provider's slot)")
            self.pg["node1"].start()
            self.kick_subscriptions_from("node1")
            self.expect_status({("weighted", n): "UP" for n in NODES}, 30)
        pid = self.wait("apply worker node3_from_node2",
                        lambda: self.apply_worker_pid("node3", "node2"), 20)
        os.kill(pid, signal.SIGSTOP)
        self.stopped_pids.append(pid)
        say("action", f"SIGSTOP node3's pglogical apply worker for node3_from_node2 (pid {pid}):"
                      f" node2's slot stays active but stops confirming")
        say("action", f"bulk load on node2: ~{LAG_TARGET // 1048576}MB of WAL into demo_bulk")
        chunk = 0
        while self.slot_lag("node2") < LAG_TARGET and chunk < 40:
            self.pg["node2"].sql("INSERT INTO demo_bulk (payload) SELECT repeat(md5(g::text), 60)"
                                 " FROM generate_series(1, 1000) g", dbname=DB)
            chunk += 1
        lag = self.slot_lag("node2")
        expect = expected_weight(lag)
        say("check", f"node2's pglogical slot for node3 is {lag / 1048576:.1f}MB behind: node3's lag "
                     f"(policy: drain_lag {POLICY['drain_lag']}, max_lag {POLICY['max_lag']}, "
                     f"min_weight {POLICY['min_weight']}% -> about {expect}%)")

        def dropped():
            row = self.obs.servers()[("weighted", "node3")]
            return (shows(row["status"], "UP") and int(row["weight"] or 100) <= expect + 5
                    and row)
        row = self.wait(f"node3's weight down to about {expect} in pg_weighted", dropped, 20)
        say("check", f"HAProxy weighted/node3: {row['status']}, weight {row['weight']}")
        say("agent", self.agent_line("node3"))
        weight = row["weight"]
        node2 = self.obs.servers()[("weighted", "node2")]
        if node2["weight"] != "100":
            raise StepFailed(f"node2 has every change but weighs {node2['weight']}")
        say("check", "HAProxy weighted/node2 (the up-to-date provider) stays at weight 100")
        self.obs.table()

        os.kill(pid, signal.SIGCONT)
        self.stopped_pids.remove(pid)
        say("action", f"SIGCONT the apply worker: node3 catches up")

        def back():
            row = self.obs.servers()[("weighted", "node3")]
            return shows(row["status"], "UP") and row["weight"] == "100"
        self.wait("node3's weight back to 100", back, 60)
        say("check", "node3 back to weight 100 in HAProxy")
        return f"node3 (the stale one) fell to weight {weight} under lag, then back to 100"

    def step4(self):
        """Maintenance: the maintenance file of node3's agent puts node3 in
        DRAIN (agent-check) and out of the read pool; removing it undoes
        both."""
        a = self.agents["node3"]
        with open(a.maintenance_file, "w") as f:
            f.write("demo maintenance\n")
        say("action", f"touch {a.maintenance_file}")
        self.expect_status({("weighted", "node3"): "DRAIN (agent)", ("read", "node3"): "DOWN"}, 20)
        say("agent", self.agent_line("node3"))
        self.obs.table()
        os.unlink(a.maintenance_file)
        say("action", f"rm {a.maintenance_file}")
        self.expect_status({("weighted", "node3"): "UP", ("read", "node3"): "UP"}, 20)
        return "node3 DRAIN in the weighted pool and out of the read pool, then back UP"

    def step5(self):
        """Restore: start node1 again; after leader_return_delay it takes the
        write leader role back; everything UP."""
        t = time.monotonic()
        if not self.node1_running():
            say("action", "pg_ctl start on node1")
            self.pg["node1"].start()
        self.kick_subscriptions_from("node1")
        self.expect_status({(p, n): "UP" for p in ("read", "weighted", "write") for n in NODES},
                           30)
        say("check", f"all nine servers UP {time.monotonic() - t:.1f}s after the start")
        self.expect_writes_on("node1", LEADER_RETURN_DELAY + 20)
        say("check", f"writes back on node1 {time.monotonic() - t:.1f}s after the start "
                     f"(leader_return_delay {LEADER_RETURN_DELAY}s)")
        notes = [r[0] for r in self.pg["node2"].sql(
            "SELECT note FROM demo_events WHERE written_on = 'node2'", dbname=DB)]
        for note in notes:
            self.wait(f"node2's row {note!r} on node1", lambda n=note: self.has_row("node1", n), 30)
        if notes:
            say("check", f"node1 caught up: it has the {len(notes)} row(s) written on node2")
        self.write_through_haproxy("step 5: written after recovery", "node1", ["node2", "node3"])
        return "node1 back; leader again after the return delay; all UP"

    STEPS = {
        1: ("Writes through HAProxy's SPOE write frontend land on node1, the leader", "step1"),
        2: ("node1's PostgreSQL stops: failover of the write leader to node2", "step2"),
        3: ("Replication lag lowers a node's agent-check weight", "step3"),
        4: ("Maintenance file: DRAIN, then back UP", "step4"),
        5: ("Restore: node1 back, write leader returns to node1, all UP", "step5"),
    }

    # -- the whole run -----------------------------------------------------
    def run(self, steps):
        banner("Setup")
        self.start_postgres()
        self.start_agents()
        self.start_haproxy()
        self.expect_ready_all()
        self.obs.start()
        for n in steps:
            title, method = self.STEPS[n]
            banner(f"Step {n}: {title}")
            t = time.monotonic()
            try:
                text = getattr(self, method)()
                self.results.append((n, True, text))
                say("PASS", f"step {n}: {text} ({time.monotonic() - t:.1f}s)")
            except StepFailed as e:
                self.results.append((n, False, str(e)))
                say("FAIL", f"step {n}: {e}")
                for node in NODES:
                    try:
                        say("agent", self.agent_line(node))
                    except Exception:  # noqa: BLE001 - node's agent may be fine, pg not
                        pass
            if n in (2, 5) or not self.results[-1][1]:
                self.obs.table()
        self.obs.stop()

    def expect_ready_all(self):
        try:
            self.expect_status({(p, n): "UP" for p in ("read", "weighted", "write")
                                for n in NODES}, 30)
        except StepFailed as e:
            raise RuntimeError(f"HAProxy never showed the cluster up: {e}") from None
        say("haproxy", "all nine servers UP (3 pools x 3 nodes)")
        self.obs.table()

    # -- --keep ------------------------------------------------------------
    def keep(self):
        atexit.unregister(self.reg.cleanup)
        state = {
            "pids": {"haproxy": self.hap.proc.pid,
                     **{f"agent-{n}": a.proc.pid for n, a in self.agents.items()},
                     "agent-central": self.central.proc.pid},
            "postgres": {n: pg.datadir for n, pg in self.pg.items()},
            "dirs": [self.reg.root],
        }
        with open(STATE_FILE, "w") as f:
            json.dump(state, f, indent=1)
        p = self.ports
        w = "postgresql://{u}:{pw}@127.0.0.1:{port}/{db}?sslmode=disable"
        print(f"""
The cluster is still running (--keep). Try it by hand:

  # writes: through SPOE to the write leader
  psql '{w.format(u=DEMO_USER, pw=DEMO_PASSWORD, port=p['write'], db=DB)}' \\
       -c "INSERT INTO demo_events (note) VALUES ('by hand') RETURNING written_on"
  # reads: any readable node (httpchk), or weighted by lag (agent-check)
  psql '{w.format(u=DEMO_USER, pw=DEMO_PASSWORD, port=p['read'], db=DB)}' \\
       -c "SELECT current_setting('cluster_name'), count(*) FROM demo_events"
  psql '{w.format(u=DEMO_USER, pw=DEMO_PASSWORD, port=p['weighted'], db=DB)}' -c 'SELECT inet_server_port()'

  # what each agent says
""" + "".join(f"  curl -s http://127.0.0.1:{a.port}/status    # {n}\n"
              for n, a in self.agents.items()) +
            f"  curl -s http://127.0.0.1:{self.central.port}/status    # central (SPOE)\n"
            f"  curl -s http://127.0.0.1:{self.agents['node2'].port}/metrics\n" + f"""
  # HAProxy's view
  stats page:  http://127.0.0.1:{p['stats']}/
  echo 'show stat' | socat - {self.hap.stats_socket}    (if socat is installed)

  # play: maintenance, failure
  touch {self.agents['node3'].maintenance_file}      (rm it to end)
  runuser -u postgres -- {harness.PG_BIN}/pg_ctl -D {self.pg['node1'].datadir} stop
  runuser -u postgres -- {harness.PG_BIN}/pg_ctl -D {self.pg['node1'].datadir} -l {self.pg['node1'].logfile} start
  # superuser psql on a node:  psql -h {self.pg['node1'].sockdir} -p {self.pg['node1'].port} -U postgres {DB}

Stop everything and remove the temp dirs:  ./demo/run --stop
""", flush=True)

    def cleanup(self):
        if self.obs:
            self.obs.stop()
        for pid in self.stopped_pids:
            harness.signal_quiet(pid, signal.SIGCONT)
        self.stopped_pids = []
        return self.reg.cleanup()


# --------------------------------------------------------------------------
# --stop
# --------------------------------------------------------------------------

def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def stop_kept(quiet=False):
    try:
        with open(STATE_FILE) as f:
            state = json.load(f)
    except FileNotFoundError:
        if not quiet:
            print("No kept demo to stop.")
        return 0
    except ValueError:
        os.unlink(STATE_FILE)
        return 0
    for what, pid in state.get("pids", {}).items():
        cmd = _cmdline(pid)
        if ("haproxy" in cmd or "pgbdr-agent" in cmd) and harness.signal_quiet(pid, signal.SIGTERM):
            print(f"stopped {what} (pid {pid})")
    for name, datadir in state.get("postgres", {}).items():
        if os.path.exists(os.path.join(datadir, "postmaster.pid")):
            r = harness.run_as_postgres([os.path.join(harness.PG_BIN, "pg_ctl"), "-D", datadir,
                                         "-m", "fast", "-w", "-t", "30", "stop"],
                                        capture_output=True, text=True)
            print(f"stopped postgres {name}" if r.returncode == 0 else
                  f"postgres {name}: {r.stderr.strip()}")
    for pid in state.get("pids", {}).values():
        for _ in range(50):
            if not harness.pid_alive(pid):
                break
            time.sleep(0.1)
    for d in state.get("dirs", []):
        shutil.rmtree(d, ignore_errors=True)
    os.unlink(STATE_FILE)
    print("removed " + ", ".join(state.get("dirs", [])))
    return 0


# --------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agent", help="pgbdr-agent binary (default: $PGBDR_AGENT, else build/)")
    ap.add_argument("--keep", action="store_true",
                    help="leave the cluster running and print how to use it")
    ap.add_argument("--stop", action="store_true", help="stop what --keep left running")
    ap.add_argument("--steps", default="1,2,3,4,5",
                    help="which steps to play, in order (default 1,2,3,4,5)")
    args = ap.parse_args()

    if args.stop:
        return stop_kept()
    if os.geteuid() != 0:
        print("demo.py must run as root (PostgreSQL runs as the OS user postgres).",
              file=sys.stderr)
        return 2
    if args.agent:
        os.environ["PGBDR_AGENT"] = os.path.abspath(args.agent)
    if not os.access(harness.agent_binary(), os.X_OK):
        print(f"no agent binary at {harness.agent_binary()}: run ./demo/run", file=sys.stderr)
        return 2
    try:
        steps = [int(s) for s in args.steps.split(",") if s.strip()]
        assert steps and all(s in Demo.STEPS for s in steps)
    except (ValueError, AssertionError):
        print(f"--steps: a comma-separated list of 1..5, got {args.steps!r}", file=sys.stderr)
        return 2
    if os.path.exists(STATE_FILE):
        print("A demo kept with --keep is still running; stopping it first.")
        stop_kept(quiet=True)

    def on_signal(signum, frame):
        raise Interrupted(signal.Signals(signum).name)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)

    print("pgbdr-agent demo: 3-node pglogical multi-master + 4 pgbdr-agents + HAProxy, "
          "all on 127.0.0.1", flush=True)
    demo = Demo(args)
    failed_setup = None
    try:
        demo.run(steps)
    except Interrupted as e:
        print(f"\ninterrupted ({e}): cleaning up", flush=True)
        demo.args.keep = False
        failed_setup = "interrupted"
    except Exception as e:  # noqa: BLE001 - report, clean up, fail
        failed_setup = f"{type(e).__name__}: {e}"
        print(f"\nERROR: {failed_setup}", flush=True)
    finally:
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        if demo.args.keep and not failed_setup:
            for pid in demo.stopped_pids:
                harness.signal_quiet(pid, signal.SIGCONT)
            if demo.obs:
                demo.obs.stop()
        else:
            errors = demo.cleanup()
            if errors:
                print(f"cleanup errors: {errors}")

    banner("Summary")
    for n, ok, text in demo.results:
        print(f"  {'PASS' if ok else 'FAIL'}  step {n}: {text}")
    missing = [n for n in steps if n not in {r[0] for r in demo.results}]
    for n in missing:
        print(f"  ----  step {n}: not run")
    elapsed = time.monotonic() - T0
    ok = not failed_setup and not missing and all(r[1] for r in demo.results)
    print(f"  {'all steps observed in HAProxy' if ok else 'NOT all steps observed'}"
          f" ({elapsed:.0f}s)", flush=True)
    if failed_setup:
        print(f"  setup/run error: {failed_setup}")
    if demo.args.keep and not failed_setup:
        demo.keep()
    if failed_setup == "interrupted":
        return 130
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
