"""Production operations: SIGHUP reload under load, sd_notify (READY,
STATUS, WATCHDOG, RELOADING, STOPPING), /metrics against a real
Prometheus text parser, secrets in logs, privilege drop, and the
man pages against the real options and keys.

The .deb package is checked by packaging/ci-package-check.sh (slow,
its own .ci/run step), not here.
"""

import configparser
import glob
import json
import math
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from harness import (CAPTURED, FAST_AGENT, ROOT, Agent, HttpError, PgServer, agent_binary,
                     free_port, ini_text, node_section, recv_reply, run_cli, wait_for)

NOT_PROBED_REASON = "no probe finished yet"


# --------------------------------------------------------------------------
# Helpers (kept here, not in harness.py)
# --------------------------------------------------------------------------

def agent_items(agent):
    """The [agent] section the harness actually wrote for this agent
    (http_listen, and whatever user/allow_root it chose), so that a
    rewritten config keeps listening where it did and keeps running as
    the same user."""
    cp = configparser.ConfigParser(interpolation=None, strict=False,
                                   inline_comment_prefixes=(";",))
    cp.read_string(agent.config_text)
    return dict(cp["agent"]) if cp.has_section("agent") else {}


def proc_ids(pid):
    """(real uid, effective uid, real gid, effective gid, [groups], CapEff) from /proc."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            fields[k] = v.split()
    uid = [int(x) for x in fields["Uid"]]
    gid = [int(x) for x in fields["Gid"]]
    groups = [int(x) for x in fields.get("Groups", [])]
    return uid, gid, groups, int(fields["CapEff"][0], 16)


def rewrite_config(agent, sections):
    """Replace the agent's config file atomically (write + rename), with
    the same owner as the running agent so that it can read it after a
    privilege drop. sections: list of (name, items), without [agent]
    listen settings (taken from the running config)."""
    items = agent_items(agent)
    out = []
    for name, sec in sections:
        if name == "agent":
            merged = dict(items)
            merged.update(sec)
            sec = merged
        out.append((name, sec))
    if "agent" not in [n for n, _ in out]:
        out.insert(0, ("agent", items))
    text = ini_text(out) if not isinstance(sections, str) else sections
    write_config_text(agent, text)
    return text


def write_config_text(agent, text):
    tmp = agent.config_path + ".new"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    if agent.proc and agent.proc.poll() is None:
        uid, gid, _, _ = proc_ids(agent.pid)
        os.chown(tmp, uid[1], gid[1])
    os.rename(tmp, agent.config_path)
    agent.config_text = text


def node_names(agent):
    return [n["name"] for n in agent.status_json()["nodes"]]


def quiet_get(port, path, timeout=2.0):
    """GET on a fresh connection without recording the reply in
    CAPTURED (a load loop would fill it); the caller checks secrets."""
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        return recv_reply(s, deadline=deadline)


class Hammer:
    """Client threads that GET the given paths in a loop and record
    every failure: an exception (refused, reset, timeout, bad framing)
    or a reply that check(path, reply) rejects."""

    def __init__(self, port, paths, check, threads_per_path=2, secrets=()):
        self.port = port
        self.paths = paths
        self.check = check
        self.secrets = list(secrets)
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.errors = []
        self.counts = {p: 0 for p in paths}
        self.threads = [threading.Thread(target=self._run, args=(p,), daemon=True)
                        for p in paths for _ in range(threads_per_path)]

    def _run(self, path):
        while not self.stop_ev.is_set():
            try:
                r = quiet_get(self.port, path)
                problem = self.check(path, r)
                for s in self.secrets:
                    if s in r.text:
                        problem = f"password in the reply to {path}"
            except (OSError, HttpError, ValueError) as e:
                problem = f"{path}: {e!r}"
            with self.lock:
                self.counts[path] += 1
                if problem:
                    self.errors.append((time.monotonic(), problem))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop_ev.set()
        for t in self.threads:
            t.join(10)

    def total(self):
        with self.lock:
            return sum(self.counts.values())


class NotifySocket:
    """A unix datagram socket standing in for systemd's NOTIFY_SOCKET.
    Every datagram is kept with its arrival time (time.monotonic())."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        os.chmod(path, 0o777)  # the agent may have dropped to another user
        self.sock.settimeout(0.1)
        self.messages = []       # (time, {key: value}, raw text)
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop_ev.is_set():
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            text = data.decode("utf-8", "replace")
            CAPTURED.text("sd_notify", text)
            kv = {}
            for line in text.split("\n"):
                if "=" in line:
                    k, v = line.split("=", 1)
                    kv[k] = v
            with self.lock:
                self.messages.append((time.monotonic(), kv, text))

    def with_key(self, key, value=None):
        with self.lock:
            return [(t, kv) for t, kv, _ in self.messages
                    if key in kv and (value is None or kv[key] == value)]

    def wait(self, key, value, timeout, after=0.0):
        """The first message with key=value that arrived after `after`."""
        def found():
            hits = [m for m in self.with_key(key, value) if m[0] > after]
            return hits[0] if hits else None
        return wait_for(found, timeout, 0.01, desc=f"sd_notify {key}={value}")

    def close(self):
        self.stop_ev.set()
        self.thread.join(5)
        self.sock.close()


class Blackhole:
    """A TCP port that completes handshakes (listen backlog) but never
    answers: a PostgreSQL that hangs, so a probe lasts until timeout."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]

    def close(self):
        self.sock.close()


def app_backend_pid(pg, application_name):
    rows = pg.sql("SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                  (application_name,))
    return rows[0][0] if len(rows) == 1 else None


# --------------------------------------------------------------------------
# SIGHUP reload
# --------------------------------------------------------------------------

def reload_sections(pg, password, names):
    return [("node." + n, node_section(pg, password, application_name=f"ops-{n}"))
            for n in names]


def test_reload_under_load_changes_nodes_without_a_client_error(registry, plain_pg,
                                                                module_password):
    agent = Agent(registry, [("agent", dict(FAST_AGENT))] +
                  reload_sections(plain_pg, module_password, ["n1", "n2"]),
                  name="agent-reload").start()
    agent.wait_state("n1", "ready", 10)
    agent.wait_state("n2", "ready", 10)
    n1_backend = wait_for(lambda: app_backend_pid(plain_pg, "ops-n1"), 10,
                          desc="n1's connection in pg_stat_activity")

    def check(path, r):
        if r.status != 200:
            return f"{path}: HTTP {r.status} {r.text.strip()!r}"
        if path == "/status":
            doc = json.loads(r.body)
            names = [n["name"] for n in doc["nodes"]]
            if "n1" not in names:
                return f"/status without n1: {names}"
            for n in doc["nodes"]:
                if n["name"] == "n1" and n["state"] != "ready":
                    return f"n1 not ready during reload: {n}"
        elif "ready" not in r.text:
            return f"{path}: {r.text!r}"
        return None

    configs = [["n1", "n3"], ["n1", "n2"], ["n1", "n2", "n3", "n4"], ["n1"], ["n1", "n5"]]
    with Hammer(agent.port, ["/node/n1", "/status", "/"], check,
                secrets=[module_password]) as h:
        wait_for(lambda: h.total() > 50, 10, desc="load running")
        for names in configs:
            rewrite_config(agent, reload_sections(plain_pg, module_password, names))
            before = h.total()
            agent.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: sorted(node_names(agent)) == sorted(names), 10,
                     desc=f"/status lists exactly {names}")
            for n in names:
                agent.wait_state(n, "ready", 10)
            wait_for(lambda: h.total() > before + 50, 10, desc="requests during the reload")
        assert agent.proc.poll() is None, agent.log()[-3000:]
    assert h.errors == [], f"{len(h.errors)} client errors, first: {h.errors[:5]}"
    assert h.total() > 300, h.counts

    # The last config: n1 and n5. Removed nodes are gone everywhere.
    for gone in ("n2", "n3", "n4"):
        assert agent.get(f"/node/{gone}").status == 404
        wait_for(lambda g=gone: app_backend_pid(plain_pg, f"ops-{g}") is None, 10,
                 desc=f"{gone}'s connection closed")
    assert agent.get("/node/n5").status == 200
    # n1 never changed: same connection all along.
    assert app_backend_pid(plain_pg, "ops-n1") == n1_backend
    metrics = agent.get("/metrics").text
    assert f'pgbdr_reloads_total{{result="ok"}} {len(configs)}' in metrics, metrics
    log = agent.log()
    assert re.search(r"node n3 added", log) and re.search(r"node n2 removed", log), log[-3000:]


def test_reload_rejects_unknown_key_and_keeps_running_config(registry, plain_pg,
                                                             module_password):
    agent = Agent(registry, [("agent", dict(FAST_AGENT))] +
                  reload_sections(plain_pg, module_password, ["k1"]),
                  name="agent-badreload").start()
    agent.wait_state("k1", "ready", 10)
    good_text = agent.config_text

    bad = rewrite_config(agent, [("agent", {})] +
                         reload_sections(plain_pg, module_password, ["k1", "k2"]))
    lines = bad.splitlines()
    # an unknown key in [node.k2], after a valid new node
    lines.append("bogus_key = 1")
    bad = "\n".join(lines) + "\n"
    bad_line = len(lines)
    write_config_text(agent, bad)
    agent.proc.send_signal(signal.SIGHUP)

    want = f"{agent.config_path}:{bad_line}"
    line = wait_for(lambda: next((l for l in agent.log().splitlines()
                                  if "bogus_key" in l and want in l), None), 10,
                    desc=f"log line naming {want} and bogus_key")
    assert re.search(r"ERROR|rejected", line), line
    assert agent.proc.poll() is None
    assert node_names(agent) == ["k1"]
    assert agent.get("/node/k1").status == 200
    assert agent.get("/node/k2").status == 404
    assert 'pgbdr_reloads_total{result="rejected"} 1' in agent.get("/metrics").text

    # A broken dsn holding the password: rejected, and the password is
    # not echoed into the log.
    write_config_text(agent, good_text.rstrip("\n") +
                      f"\n\n[node.k9]\ndsn = host=127.0.0.1 password={module_password} "
                      f"port=5432 'unterminated\n")
    agent.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: 'pgbdr_reloads_total{result="rejected"} 2' in agent.get("/metrics").text,
             10, desc="second rejected reload")
    assert module_password not in agent.log()

    # And a good file is taken again.
    rewrite_config(agent, reload_sections(plain_pg, module_password, ["k1", "k2"]))
    agent.proc.send_signal(signal.SIGHUP)
    agent.wait_state("k2", "ready", 10)
    assert 'pgbdr_reloads_total{result="ok"} 1' in agent.get("/metrics").text


# --------------------------------------------------------------------------
# sd_notify
# --------------------------------------------------------------------------

def test_sd_notify_ready_after_first_round_and_watchdog(registry, plain_pg, module_password,
                                                        monkeypatch):
    for var in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(var, raising=False)
    base = registry.mkdtemp("notify")
    os.chmod(base, 0o755)
    ns = NotifySocket(os.path.join(base, "notify.sock"))
    hole = Blackhole()
    timeout_s = 1.5
    try:
        agent = Agent(registry, [
            ("agent", dict(FAST_AGENT, timeout=f"{int(timeout_s * 1000)}ms")),
            ("node.fast", node_section(plain_pg, module_password)),
            # connects, then never answers: its first round ends at timeout
            ("node.slow", {"dsn": f"host=127.0.0.1 port={hole.port} dbname=app "
                                  f"user=pgbdr_monitor password={module_password}",
                           "flavor": "plain"}),
        ], name="agent-notify", env={"NOTIFY_SOCKET": ns.path, "WATCHDOG_USEC": "500000"})
        t0 = time.monotonic()
        agent.start()
        t_live = time.monotonic()

        t_ready, ready = ns.wait("READY", "1", 10)
        # Listening came first, and READY=1 waited for the slow node's
        # first round (its timeout), not just for the listeners.
        if t_live - t0 < timeout_s - 0.3:
            assert not [m for m in ns.with_key("READY") if m[0] <= t_live], \
                "READY=1 before the first probe round finished"
        assert t_ready - t0 >= timeout_s - 0.2, \
            f"READY=1 {t_ready - t0:.2f}s after start, before the slow node's timeout"
        st = agent.status_json()
        for n in st["nodes"]:
            assert n["reason"] != NOT_PROBED_REASON, f"READY=1 before {n['name']} was probed: {n}"
            assert n["checked_at"] is not None or n["state"] == "down", n
        assert agent.node("fast")["state"] == "ready"
        assert agent.node("slow")["state"] == "down"
        assert "STATUS" in ready and re.search(r"1/2 nodes ready", ready["STATUS"]), ready
        assert len(ns.with_key("READY", "1")) == 1

        # WATCHDOG_USEC=500000: a ping every 250 ms from the event loop.
        t1 = time.monotonic()
        time.sleep(1.05)
        pings = [t for t, _ in ns.with_key("WATCHDOG", "1") if t1 <= t <= t1 + 1.0]
        assert len(pings) >= 3, f"{len(pings)} WATCHDOG=1 in 1s"
        # ...and keeps coming while HTTP clients are served.
        for _ in range(20):
            assert agent.get("/live").status == 200
        t2 = time.monotonic()
        wait_for(lambda: len([t for t, _ in ns.with_key("WATCHDOG", "1") if t > t2]) >= 3, 2,
                 desc="watchdog pings continue")

        # SIGHUP: RELOADING=1, then READY=1 again; STATUS= follows the
        # change (the slow node is gone).
        rewrite_config(agent, [("node.fast", node_section(plain_pg, module_password))])
        t3 = time.monotonic()
        agent.proc.send_signal(signal.SIGHUP)
        t_reloading, _ = ns.wait("RELOADING", "1", 5, after=t3)
        t_ready2, _ = ns.wait("READY", "1", 5, after=t3)
        assert t_ready2 >= t_reloading
        wait_for(lambda: [kv for t, kv in ns.with_key("STATUS") if t > t3 and
                          kv["STATUS"].startswith("1/1 nodes ready")], 5,
                 desc="STATUS=1/1 nodes ready after the reload")

        # SIGTERM: STOPPING=1, exit 0.
        t4 = time.monotonic()
        assert agent.stop() == 0, agent.log()[-2000:]
        ns.wait("STOPPING", "1", 5, after=t4)
    finally:
        hole.close()
        ns.close()


def test_no_watchdog_without_watchdog_usec(registry, plain_pg, module_password, monkeypatch):
    for var in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(var, raising=False)
    base = registry.mkdtemp("notify")
    ns = NotifySocket(os.path.join(base, "notify.sock"))
    try:
        agent = Agent(registry, [("agent", dict(FAST_AGENT)),
                                 ("node.a", node_section(plain_pg, module_password))],
                      name="agent-nowd", env={"NOTIFY_SOCKET": ns.path}).start()
        ns.wait("READY", "1", 10)
        time.sleep(0.6)
        assert ns.with_key("WATCHDOG") == []
        # WATCHDOG_PID naming another process: not ours, no pings.
        agent.stop()
        agent2 = Agent(registry, [("agent", dict(FAST_AGENT)),
                                  ("node.a", node_section(plain_pg, module_password))],
                       name="agent-wdpid",
                       env={"NOTIFY_SOCKET": ns.path, "WATCHDOG_USEC": "200000",
                            "WATCHDOG_PID": "1"})
        t = time.monotonic()
        agent2.start()
        wait_for(lambda: [m for m in ns.with_key("READY", "1") if m[0] > t], 10, desc="READY")
        time.sleep(0.5)
        assert [m for m in ns.with_key("WATCHDOG") if m[0] > t] == []
        agent2.stop()
    finally:
        ns.close()


# --------------------------------------------------------------------------
# /metrics
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def physical_pair(module_registry, module_password):
    primary = PgServer(module_registry, "ops-primary", pglogical=False).init().start()
    primary.create_database("app")
    primary.apply_grants("physical", dbname="app", password=module_password)
    standby = primary.create_standby("ops-standby")
    wait_for(lambda: primary.sql("SELECT 1 FROM pg_stat_replication WHERE state = 'streaming'"),
             30, desc="standby streaming")
    wait_for(lambda: standby.scalar(
        "SELECT count(*) FROM pg_roles WHERE rolname = 'pgbdr_monitor'"), 10,
        desc="role replicated")
    return primary, standby


def parse_metrics(text):
    from prometheus_client.parser import text_string_to_metric_families
    families = {}
    for fam in text_string_to_metric_families(text):
        assert fam.name not in families, f"family {fam.name} twice"
        families[fam.name] = fam
    return families


def samples(families, sample_name):
    out = []
    for fam in families.values():
        for s in fam.samples:
            if s.name == sample_name:
                out.append(s)
    return out


def by_node(families, sample_name, **labels):
    return {s.labels["node"]: s.value for s in samples(families, sample_name)
            if all(s.labels.get(k) == v for k, v in labels.items())}


STATUS_FIELDS = ("name", "state", "weight", "write_leader", "lag_bytes", "lag_seconds",
                 "maintenance")


def snapshot(doc):
    return ({k: doc[k] for k in ("ready_nodes", "maintenance", "write_node")},
            [{k: n[k] for k in STATUS_FIELDS} for n in doc["nodes"]])


def test_metrics_parse_and_match_status(registry, physical_pair, plain_pg, module_password):
    primary, standby = physical_pair
    agent = Agent(registry, [
        ("agent", dict(FAST_AGENT, leader_handover="0s", leader_return_delay="0s")),
        ("policy", {"read_only": "ready", "drain_lag": "1GB", "max_lag": "2GB"}),
        ("node.primary", node_section(primary, module_password, flavor="physical", priority=1)),
        ("node.standby", node_section(standby, module_password, flavor="physical", priority=2)),
        ("node.plain", node_section(plain_pg, module_password, priority=3)),
        ("node.dead", {"dsn": f"host=127.0.0.1 port={free_port()} dbname=app "
                              f"user=pgbdr_monitor password={module_password}",
                       "flavor": "plain"}),
    ], name="agent-metrics").start()
    agent.wait_state("primary", "ready", 15)
    agent.wait_state("standby", "ready", 15)
    agent.wait_state("plain", "ready", 15)
    agent.wait_state("dead", "down", 15)
    wait_for(lambda: agent.status_json()["write_node"] == "primary", 10, desc="write leader")
    wait_for(lambda: agent.node("standby")["lag_bytes"] is not None, 10,
             desc="standby lag known")

    r = agent.get("/metrics")
    assert r.status == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4"), r.headers
    assert r.headers["content-length"] == str(len(r.body))
    head = agent.get("/metrics", method="HEAD")
    assert head.status == 200 and head.body == b""

    # A consistent pair: /status, /metrics, /status with no change between.
    def consistent():
        before = agent.status_json()
        text = agent.get("/metrics").text
        after = agent.status_json()
        return (before, text) if snapshot(before) == snapshot(after) else None
    doc, text = wait_for(consistent, 10, interval=0.1, desc="a stable status")
    fams = parse_metrics(text)

    # Every line is a sample of a declared family, or a comment.
    for line in text.splitlines():
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or \
            re.match(r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? \S+$", line), line
    for name, typ in [("pgbdr_node_state", "gauge"), ("pgbdr_node_up", "gauge"),
                      ("pgbdr_node_weight_ratio", "gauge"), ("pgbdr_node_info", "gauge"),
                      ("pgbdr_node_write_leader", "gauge"),
                      ("pgbdr_node_lag_bytes", "gauge"), ("pgbdr_node_lag_seconds", "gauge"),
                      ("pgbdr_probe_duration_seconds", "histogram"),
                      ("pgbdr_probe_errors", "counter"), ("pgbdr_reloads", "counter"),
                      ("pgbdr_http_responses", "counter")]:
        assert name in fams, f"{name} missing: {sorted(fams)}"
        assert fams[name].type == typ, (name, fams[name].type)

    names = [n["name"] for n in doc["nodes"]]
    assert sorted(names) == ["dead", "plain", "primary", "standby"]
    up = by_node(fams, "pgbdr_node_up")
    weight = by_node(fams, "pgbdr_node_weight_ratio")
    leader = by_node(fams, "pgbdr_node_write_leader")
    lag_b = by_node(fams, "pgbdr_node_lag_bytes")
    lag_s = by_node(fams, "pgbdr_node_lag_seconds")
    for n in doc["nodes"]:
        name = n["name"]
        states = {s.labels["state"]: s.value for s in samples(fams, "pgbdr_node_state")
                  if s.labels["node"] == name}
        assert states == {s: (1.0 if s == n["state"] else 0.0)
                          for s in ("ready", "degraded", "draining", "down")}, (name, states, n)
        assert up[name] == (1.0 if n["state"] in ("ready", "degraded") else 0.0), (name, n)
        assert weight[name] == n["weight"] / 100, (name, n)
        info = [s for s in samples(fams, "pgbdr_node_info") if s.labels["node"] == name]
        assert len(info) == 1 and info[0].value == 1, (name, info)
        assert info[0].labels["flavor"] == n["flavor"], (name, info, n)
        assert leader[name] == (1.0 if n["write_leader"] else 0.0), (name, n)
        # unknown lag: absent, never 0
        if n["lag_bytes"] is None:
            assert name not in lag_b, (name, n)
        else:
            assert lag_b[name] == n["lag_bytes"], (name, n)
        if n["lag_seconds"] is None:
            assert name not in lag_s, (name, n)
        else:
            assert math.isclose(lag_s[name], n["lag_seconds"], abs_tol=0.0011), (name, n)
    # a plain server replicates from nowhere: lag 0, known; a dead node's is unknown
    assert "standby" in lag_b and "dead" not in lag_b and lag_b["plain"] == 0
    assert sum(leader.values()) == 1 and leader["primary"] == 1
    assert samples(fams, "pgbdr_ready_nodes")[0].value == doc["ready_nodes"] == 3
    assert samples(fams, "pgbdr_maintenance")[0].value == 0

    # Histogram: cumulative buckets, +Inf = count, per node.
    for name in names:
        buckets = sorted(((float(s.labels["le"]), s.value)
                          for s in samples(fams, "pgbdr_probe_duration_seconds_bucket")
                          if s.labels["node"] == name))
        counts = [v for _, v in buckets]
        assert counts == sorted(counts), (name, buckets)
        assert buckets[-1][0] == math.inf
        count = [s.value for s in samples(fams, "pgbdr_probe_duration_seconds_count")
                 if s.labels["node"] == name]
        assert count == [buckets[-1][1]] and count[0] >= 1, (name, buckets, count)
    dead_errors = sum(s.value for s in samples(fams, "pgbdr_probe_errors_total")
                      if s.labels["node"] == "dead")
    assert dead_errors >= 1
    assert module_password not in text


# --------------------------------------------------------------------------
# Secrets
# --------------------------------------------------------------------------

def test_no_password_in_logs_replies_or_notify(registry, plain_pg, module_password, password,
                                               monkeypatch):
    """Debug logging, a failing login with a wrong password, a node that
    never answers, a rejected reload, /status, /metrics and sd_notify:
    none of it carries a configured password. (Every agent log of the
    session is also scanned after each test by conftest's autouse
    fixture, and at module teardown.)"""
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    wrong = CAPTURED.secret("Wr0ng-" + password)
    base = registry.mkdtemp("notify")
    ns = NotifySocket(os.path.join(base, "notify.sock"))
    hole = Blackhole()
    try:
        agent = Agent(registry, [
            ("agent", dict(FAST_AGENT, log_level="debug")),
            ("node.good", node_section(plain_pg, module_password)),
            ("node.badpw", {"host": "127.0.0.1", "port": plain_pg.port, "dbname": "app",
                            "user": "pgbdr_monitor", "password": wrong, "flavor": "plain"}),
            ("node.hang", {"dsn": f"postgresql://pgbdr_monitor:{password}@127.0.0.1:{hole.port}"
                                  f"/app?connect_timeout=1", "flavor": "plain"}),
        ], name="agent-secrets", env={"NOTIFY_SOCKET": ns.path}).start()
        agent.wait_state("good", "ready", 10)
        agent.wait_state("badpw", "down", 10, reason_re="auth|password")
        agent.wait_state("hang", "down", 10)
        for path in ("/status", "/metrics", "/node/badpw", "/node/hang", "/"):
            r = agent.get(path)
            for s in (module_password, wrong, password):
                assert s not in r.text, path
        with open(agent.config_path) as f:
            good = f.read()
        write_config_text(agent, good + "\n[node.broken]\ndsn = password=" + password +
                          " host='unterminated\n")
        agent.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: 'result="rejected"} 1' in agent.get("/metrics").text, 10,
                 desc="rejected reload")
        # --check-config on the broken file, --once --json on the good one
        r = run_cli(["-c", agent.config_path, "--check-config"])
        assert r.returncode == 1
        write_config_text(agent, good)
        r2 = run_cli(["-c", agent.config_path, "--once", "--json"])
        assert b'"badpw"' in r2.stdout, r2
        agent.stop()
        text = agent.log()
        assert re.search(r"badpw.*(auth|password)", text, re.I), text[-3000:]
        for s in (module_password, wrong, password):
            assert s not in text, "password in the agent log"
            for _, _, raw in ns.messages:
                assert s not in raw
            for out in (r.stdout + r.stderr, r2.stdout + r2.stderr):
                assert s.encode() not in out
    finally:
        hole.close()
        ns.close()
    assert CAPTURED.leaks() == []


def test_session_agent_logs_hold_no_password():
    """A scan over every agent log still on disk that this session
    started (modules that finished have had theirs scanned at teardown,
    and their directories removed)."""
    leaks = CAPTURED.leaks()
    assert leaks == [], leaks
    for path in glob.glob("/tmp/pgbdr-*/agent.log"):
        try:
            with open(path, "rb") as f:
                data = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        for s in CAPTURED.secrets:
            assert s not in data, f"password in {path}"


# --------------------------------------------------------------------------
# Privilege drop ([agent] user, allow_root)
# --------------------------------------------------------------------------

def privilege_drop_landed():
    """The daemon's privilege drop (setuid/setresuid in agent/*.c)."""
    for path in glob.glob(os.path.join(ROOT, "agent", "*.c")):
        with open(path, errors="replace") as f:
            if re.search(r"\bset(res)?uid\s*\(", f.read()):
                return True
    return False


needs_privdrop = pytest.mark.skipif(
    os.geteuid() != 0 or not privilege_drop_landed(),
    reason="needs root and the daemon's privilege drop (setuid in agent/*.c)")


def privdrop_agent(registry, sections, name, chown_to=None, mode=0o600):
    a = Agent(registry, sections, name=name)
    if chown_to:
        pw = pwd.getpwnam(chown_to)
        os.chown(a.config_path, pw.pw_uid, pw.pw_gid)
    os.chmod(a.config_path, mode)
    return a


@needs_privdrop
def test_privilege_drop_to_user_and_reload(registry, plain_pg, module_password):
    nobody = pwd.getpwnam("nobody")
    agent = privdrop_agent(registry, [
        ("agent", dict(FAST_AGENT, user="nobody")),
        ("node.p1", node_section(plain_pg, module_password)),
    ], "agent-privdrop", chown_to="nobody").start()
    agent.wait_state("p1", "ready", 10)
    uid, gid, groups, cap_eff = proc_ids(agent.pid)
    assert uid == [nobody.pw_uid] * 4, f"Uid: {uid}"
    assert gid == [nobody.pw_gid] * 4, f"Gid: {gid}"
    assert set(groups) <= {nobody.pw_gid}, f"supplementary groups kept: {groups}"
    assert cap_eff == 0, f"CapEff {cap_eff:x}"

    # The listener bound as root is still there, and reload still works
    # (the config is readable by nobody).
    rewrite_config(agent, [("node.p1", node_section(plain_pg, module_password)),
                           ("node.p2", node_section(plain_pg, module_password))])
    agent.proc.send_signal(signal.SIGHUP)
    agent.wait_state("p2", "ready", 10)
    assert 'pgbdr_reloads_total{result="ok"} 1' in agent.get("/metrics").text
    assert proc_ids(agent.pid)[0] == [nobody.pw_uid] * 4
    assert agent.stop() == 0


@needs_privdrop
def test_root_without_user_is_refused_unless_allow_root(registry, plain_pg, module_password):
    items = dict(FAST_AGENT, http_listen=f"127.0.0.1:{free_port()}")
    cfg_dir = registry.mkdtemp("rootcfg")
    path = os.path.join(cfg_dir, "pgbdr-agent.ini")
    with open(path, "w") as f:
        f.write(ini_text([("agent", items),
                          ("node.r1", node_section(plain_pg, module_password))]))
    os.chmod(path, 0o600)
    binary = agent_binary()
    try:
        r = subprocess.run([binary, "-c", path], capture_output=True, timeout=10,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail("the agent ran as root without user = and without allow_root = yes")
    CAPTURED.text("root refused", r.stdout + r.stderr)
    msg = (r.stdout + r.stderr).decode("utf-8", "replace")
    assert r.returncode != 0, msg
    assert "allow_root" in msg and "user" in msg, msg

    # allow_root = yes: runs, as root.
    agent = Agent(registry, [("agent", dict(FAST_AGENT, allow_root="yes")),
                             ("node.r1", node_section(plain_pg, module_password))],
                  name="agent-allowroot")
    text = re.sub(r"(?m)^user = .*\n", "", agent.config_text)  # harness may add user = nobody
    write_config_text(agent, text)
    agent.start()
    agent.wait_state("r1", "ready", 10)
    assert proc_ids(agent.pid)[0][1] == 0


@needs_privdrop
def test_warning_when_config_with_password_is_world_readable(registry, plain_pg,
                                                             module_password):
    agent = privdrop_agent(registry, [
        ("agent", dict(FAST_AGENT, user="nobody")),
        ("node.w1", node_section(plain_pg, module_password)),
    ], "agent-worldread", chown_to="nobody", mode=0o644).start()
    agent.wait_state("w1", "ready", 10)
    warn = [l for l in agent.log().splitlines() if agent.config_path in l and "WARN" in l]
    assert warn, agent.log()[-2000:]
    assert module_password not in agent.log()

    quiet = privdrop_agent(registry, [
        ("agent", dict(FAST_AGENT, user="nobody")),
        ("node.w2", node_section(plain_pg, module_password)),
    ], "agent-private", chown_to="nobody", mode=0o600).start()
    quiet.wait_state("w2", "ready", 10)
    assert not [l for l in quiet.log().splitlines() if quiet.config_path in l and "WARN" in l]


# --------------------------------------------------------------------------
# Man pages: render without warnings, and document the real interface
# --------------------------------------------------------------------------

MAN8 = os.path.join(ROOT, "man", "pgbdr-agent.8")
MAN5 = os.path.join(ROOT, "man", "pgbdr-agent.ini.5")


def groff_text(path):
    if not shutil.which("groff"):
        pytest.skip("groff not installed")
    r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-rLL=80n", path],
                       capture_output=True, env=dict(os.environ, LC_ALL="C.UTF-8"))
    assert r.returncode == 0 and r.stderr == b"", r.stderr.decode()
    # undo bold/underline overstrikes and SGR
    text = re.sub(r".\x08", "", r.stdout.decode("utf-8", "replace"))
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


@pytest.mark.parametrize("path", [MAN8, MAN5], ids=["pgbdr-agent.8", "pgbdr-agent.ini.5"])
def test_man_page_renders_without_warnings(path):
    assert os.path.exists(path), path
    groff_text(path)
    if shutil.which("man"):
        r = subprocess.run(["man", "--warnings", "-l", path], capture_output=True,
                           env=dict(os.environ, MANPAGER="cat", PAGER="cat", MANWIDTH="80",
                                    LC_ALL="C.UTF-8"))
        assert r.returncode == 0 and r.stderr == b"", r.stderr.decode()


def test_man8_documents_every_option_and_endpoint():
    text = groff_text(MAN8)
    r = run_cli(["--help"])
    opts = set(re.findall(r"--[a-z][a-z-]+", r.stdout.decode()))
    assert opts >= {"--check-config", "--once", "--json", "--inetd", "--version", "--help"}
    for opt in sorted(opts):
        assert opt in text, f"{opt} not in pgbdr-agent(8)"
    for word in ("/node/", "/write", "/read", "/status", "/metrics", "/live", "SIGHUP",
                 "SIGTERM", "SIGINT", "agent-check", "pgbdr-status", "EXIT STATUS",
                 "/etc/pgbdr-agent/pgbdr-agent.ini", "NOTIFY_SOCKET"):
        assert word in text, f"{word} not in pgbdr-agent(8)"


def test_man5_documents_every_key_of_the_example_config():
    text = groff_text(MAN5)
    with open(os.path.join(ROOT, "haproxy-examples", "pgbdr-agent.ini")) as f:
        example = f.read()
    keys = set(re.findall(r"(?m)^[#;]?([a-z_]+) =", example))
    assert {"http_listen", "drain_lag", "allow_root", "dsn"} <= keys, keys
    for key in sorted(keys):
        assert re.search(rf"\b{key}\b", text), f"key {key} not in pgbdr-agent.ini(5)"
    for section in ("[postgresql]", "[agent]", "[policy]", "[node."):
        assert section in text
    assert "database.ini" in text
