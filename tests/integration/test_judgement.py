"""Judgement that can be trusted: read-only BDR nodes are never writable,
a node that changes what it is under a live connection is re-detected,
the classic [postgresql] section keeps its classic meaning (a BDR check),
and PostgreSQL's own warnings never reach an --inetd reply.

BDR here is the catalog EMULATION (fixtures/bdr1_emulation.sql, not BDR)
on real PostgreSQL 15.
"""

import os
import re
import time

import pytest

from harness import PG_BIN, FAST_AGENT, FIXTURES_DIR, Agent, PgServer, node_section, run_cli, \
    run_as_postgres, wait_for, write_config

NODES = ("node1", "node2", "node3")


def emulate(pg, db, me, peers):
    pg.run_file(os.path.join(FIXTURES_DIR, "bdr1_emulation.sql"), dbname=db)
    pg.sql("SELECT bdr.emulation_setup(%s, VARIADIC %s)", (me, list(peers)), dbname=db)


@pytest.fixture(scope="module")
def bdr(module_registry, module_password):
    pg = PgServer(module_registry, "judge-bdr", pglogical=False).init().start()
    for name in NODES:
        pg.create_database(name)
        emulate(pg, name, name, [p for p in NODES if p != name])
        pg.apply_grants("bdr", dbname=name, password=module_password)
    return pg


@pytest.fixture(scope="module")
def central(module_registry, bdr, module_password):
    return Agent(module_registry, [
        ("agent", dict(FAST_AGENT, leader_return_delay="0s", leader_handover="0s")),
        *[(f"node.{n}", node_section(bdr, module_password, dbname=n, flavor="bdr",
                                     priority=i)) for i, n in enumerate(NODES)],
    ], name="agent-judge-bdr").start()


def leaders(agent):
    return [n["name"] for n in agent.status_json()["nodes"] if n["write_leader"]]


def test_default_transaction_read_only_means_no_writer(bdr, central):
    for n in NODES:
        central.wait_state(n, "ready", 10)
    wait_for(lambda: leaders(central) == ["node1"], 10, desc="node1 leads")
    bdr.sql("ALTER SYSTEM SET default_transaction_read_only = on")
    bdr.sql("SELECT pg_reload_conf()")
    try:
        wait_for(lambda: all(central.node(n)["read_only"] for n in NODES), 10,
                 desc="every node read-only")
        wait_for(lambda: leaders(central) == [], 10, desc="no write leader")
        assert central.status_json()["write_node"] is None
        assert central.get("/write").status == 503
        # read-only under the default policy: not serving writes, and not elected
        for n in NODES:
            assert not central.node(n)["write_leader"]
    finally:
        bdr.sql("ALTER SYSTEM RESET default_transaction_read_only")
        bdr.sql("SELECT pg_reload_conf()")
    for n in NODES:
        wait_for(lambda n=n: not central.node(n)["read_only"], 10, desc=f"{n} writable")
    wait_for(lambda: len(leaders(central)) == 1, 10, desc="one leader again")
    leader = leaders(central)[0]
    assert central.status_json()["write_node"] == leader
    assert central.get(f"/node/{leader}").status == 200


def test_plain_node_that_joins_bdr_is_redetected(module_registry, bdr, module_password):
    """flavor = auto on a plain database; then a BDR catalog appears with
    the local node still copying its initial data ('i'): not ready within
    a few intervals, although the connection stays open."""
    bdr.create_database("joiner")
    agent = Agent(module_registry, [
        ("agent", dict(FAST_AGENT)),
        ("node.joiner", node_section(bdr, module_password, dbname="joiner", flavor="auto")),
    ], name="agent-joiner").start()
    n = agent.wait_state("joiner", "ready", 10)
    assert n["flavor"] == "plain"
    emulate(bdr, "joiner", "joiner", ["node1"])
    bdr.sql("UPDATE bdr.bdr_nodes SET node_status = 'i' WHERE node_name = 'joiner'",
            dbname="joiner")
    bdr.apply_grants("bdr", dbname="joiner", password=module_password)
    # interval 200ms: re-detection every few probes is well within 5s
    n = agent.wait_state("joiner", "down", 5, reason_re=r"join.*\bi\b")
    assert n["flavor"] == "bdr", n
    assert "flavor bdr" in agent.log()
    agent.stop()


def test_classic_section_on_a_database_without_bdr(module_registry, plain_pg, module_password):
    classic = [("postgresql", [("host", "127.0.0.1"), ("port", plain_pg.port),
                               ("database", "app"), ("user", "pgbdr_monitor"),
                               ("password", module_password)])]
    agent = Agent(module_registry, classic + [("agent", dict(FAST_AGENT))],
                  name="agent-classic-plain").start()
    n = wait_for(lambda: (lambda n: n if n["checked_at"] or "BDR" in n["reason"] else False)(
        agent.status_json()["nodes"][0]), 10, desc="a verdict")
    assert n["state"] == "down" and n["weight"] == 0, n
    assert re.search(r"no BDR.*flavor", n["reason"]), n
    r = agent.get("/")
    assert r.status == 503 and "flavor" in r.text, r
    agent.stop()
    # The same section with a flavor key checks what it says.
    path = write_config(module_registry, [
        ("postgresql", classic[0][1] + [("flavor", "auto")]), ("agent", dict(FAST_AGENT))],
        "classic-auto")
    r = run_cli(["-c", path, "--inetd"], input=b"GET / HTTP/1.0\r\n\r\n")
    assert r.stdout.startswith(b"HTTP/1.0 200 "), r.stdout


@pytest.fixture
def warning_db(module_registry, module_password):
    """A database whose every new connection gets a WARNING: its recorded
    collation version no longer matches the library's."""
    pg = PgServer(module_registry, "judge-coll", pglogical=False).init().start()
    pg.create_database("app")
    pg.apply_grants("plain", dbname="app", password=module_password)
    pg.sql("UPDATE pg_database SET datcollversion = '0.0' WHERE datname = 'app'")
    r = run_as_postgres([os.path.join(PG_BIN, "psql"), "-X", "-h", pg.sockdir, "-p",
                         str(pg.port), "-d", "app", "-c", "SELECT 1"], capture_output=True)
    assert b"WARNING" in r.stderr and b"collation version" in r.stderr, r.stderr
    return pg


def test_inetd_reply_is_clean_despite_a_connect_warning(module_registry, warning_db,
                                                         module_password):
    path = write_config(module_registry, [
        ("agent", dict(FAST_AGENT)),
        ("node.n1", node_section(warning_db, module_password)),
    ], "inetd-warning")
    # xinetd hands the socket in as stdout and stderr alike: merge them.
    import subprocess
    from harness import agent_binary
    r = subprocess.run([agent_binary(), "-c", path, "--inetd"],
                       input=b"OPTIONS / HTTP/1.0\r\n\r\n", stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=30)
    assert r.stdout.startswith(b"HTTP/1.0 200 "), r.stdout
    head, _, body = r.stdout.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))
    assert len(body) == length and b"WARNING" not in r.stdout, r.stdout


LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR) \S")


def test_daemon_log_keeps_its_format_despite_connect_warnings(module_registry, warning_db,
                                                               module_password):
    """The daemon half: every connection to the database gets the
    collation WARNING, and the agent is made to reconnect again and
    again. Its log holds only lines in its own format (timestamp LEVEL
    text), and the warning shows up, at most once per 10 s per node."""
    agent = Agent(module_registry, [
        ("agent", dict(FAST_AGENT)),
        ("node.n1", node_section(warning_db, module_password)),
    ], name="agent-warning").start()
    try:
        agent.wait_state("n1", "ready", 10)
        t0 = time.monotonic()
        kicked = 0
        while time.monotonic() - t0 < 8:
            kicked += warning_db.scalar(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = 'app' AND usename = 'pgbdr_monitor'")
            time.sleep(0.4)
        agent.wait_state("n1", "ready", 10)
        elapsed = time.monotonic() - t0
    finally:
        agent.stop()
    log = agent.log()
    assert kicked >= 5, (kicked, log[-3000:])
    assert log.count("INFO node n1: PostgreSQL") >= 5, log[-3000:]  # it did reconnect
    bad = [line for line in log.splitlines() if not LOG_LINE.match(line)]
    assert not bad, bad[:10]
    warned = [line for line in log.splitlines() if "collation version" in line]
    assert warned, log[-3000:]
    assert all("node n1: server notice: WARNING" in line for line in warned), warned
    assert len(warned) <= elapsed // 10 + 2, warned


def test_inetd_config_error_is_a_503_that_says_why(module_registry):
    path = write_config(module_registry, "[postgresql]\nhost=localhost\n[agent]\n"
                        "interval = banana\n", "inetd-bad")
    import subprocess
    from harness import agent_binary
    r = subprocess.run([agent_binary(), "-c", path, "--inetd"],
                       input=b"GET / HTTP/1.0\r\n\r\n", stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=30)
    assert r.stdout.startswith(b"HTTP/1.0 503 "), r.stdout
    head, _, body = r.stdout.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))
    assert len(body) == length and b"interval" in body, r.stdout


def test_log_says_flavor_first_verdict_changes_and_superuser(module_registry, plain_pg,
                                                             module_password):
    """At the default log level: the detected flavor, each node's first
    verdict (also when it is down), every change of state with its
    reason, and a warning when the role is a superuser."""
    plain_pg.sql("DROP DATABASE IF EXISTS judge_gone")
    agent = Agent(module_registry, [
        ("agent", dict(FAST_AGENT, log_level="info")),
        ("node.n1", node_section(plain_pg, module_password, flavor="auto")),
        ("node.su", {"dsn": plain_pg.dsn_socket("app"), "flavor": "auto"}),
        ("node.gone", node_section(plain_pg, module_password, dbname="judge_gone")),
    ], name="agent-logs").start()
    agent.wait_state("n1", "ready", 10)
    agent.wait_state("su", "ready", 10)
    wait_for(lambda: "node gone: first verdict: down" in agent.log(), 10, desc="first verdict")
    log = agent.log()
    assert re.search(r"INFO node n1: PostgreSQL \d+, flavor plain", log), log
    assert re.search(r"INFO node n1: first verdict: ready 100%", log), log
    assert re.search(r"node gone: first verdict: down 0%: .*judge_gone", log), log
    assert re.search(r"WARNING node su: .*superuser", log), log
    assert not re.search(r"WARNING node n1: .*superuser", log), log
    plain_pg.sql("CREATE DATABASE judge_gone")
    try:
        agent.wait_state("gone", "ready", 10)
        wait_for(lambda: re.search(r"INFO node gone: down 0% -> ready 100%", agent.log()), 5,
                 desc="change logged")
    finally:
        agent.stop()
        plain_pg.sql("DROP DATABASE judge_gone")


def test_two_physical_primaries_are_never_both_writable(module_registry, module_password):
    """A standby is promoted while its old primary still runs: two nodes
    out of recovery. The old one is on the older timeline: it takes no
    writes, and its reason names both; at no moment are both writable."""
    primary = PgServer(module_registry, "judge-prim", pglogical=False).init().start()
    primary.create_database("app")
    primary.apply_grants("physical", dbname="app", password=module_password)
    standby = primary.create_standby("judge-stby")
    wait_for(lambda: standby.scalar("SELECT count(*) FROM pg_roles WHERE rolname ="
                                    " 'pgbdr_monitor'"), 30, desc="role replicated")
    agent = Agent(module_registry, [
        ("agent", dict(FAST_AGENT, leader_return_delay="0s", leader_handover="0s")),
        ("policy", {"read_only": "ready"}),
        ("node.old", node_section(primary, module_password, flavor="physical", priority=1)),
        ("node.new", node_section(standby, module_password, flavor="physical", priority=2)),
    ], name="agent-splitbrain").start()
    agent.wait_state("old", "ready", 10)
    agent.wait_state("new", "ready", 10)
    wait_for(lambda: leaders(agent) == ["old"], 10, desc="old primary leads")
    standby.pg_ctl("promote")
    wait_for(lambda: standby.scalar("SELECT NOT pg_is_in_recovery()"), 30, desc="promoted")

    def writable(st):
        return {n["name"] for n in st["nodes"]
                if n["state"] in ("ready", "degraded") and not n["read_only"]}
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        st = agent.status_json()
        assert len(writable(st)) <= 1, st
        assert len([n for n in st["nodes"] if n["write_leader"]]) <= 1, st
        time.sleep(0.05)
    old = wait_for(lambda: (lambda n: n if "split brain" in n["reason"] else False)(
        agent.node("old")), 10, desc="split brain named")
    assert "old" in old["reason"] and "new" in old["reason"] and old["read_only"], old
    assert writable(agent.status_json()) == {"new"}
    wait_for(lambda: leaders(agent) == ["new"], 10, desc="the promoted primary leads")
    agent.stop()


def test_name_not_known_yet_is_said_then_settles(module_registry, bdr, module_password):
    """A classic section without name=: until a probe reads the catalog's
    local node name, /status says the name is not known yet; then the
    catalog name stays, also while the node is down."""
    from harness import free_port
    dead = free_port()
    agent = Agent(module_registry, [
        ("postgresql", [("host", "127.0.0.1"), ("port", dead), ("database", "node2"),
                        ("user", "pgbdr_monitor"), ("password", module_password)]),
        ("agent", dict(FAST_AGENT)),
    ], name="agent-name-pending").start()
    n = wait_for(lambda: (lambda n: n if n["reason"] != "no probe finished yet" else False)(
        agent.status_json()["nodes"][0]), 10, desc="a failed probe")
    assert "not known yet" in n.get("name_note", ""), n
    agent.stop()
    agent = Agent(module_registry, [
        ("postgresql", [("host", "127.0.0.1"), ("port", bdr.port), ("database", "node2"),
                        ("user", "pgbdr_monitor"), ("password", module_password)]),
        ("agent", dict(FAST_AGENT)),
    ], name="agent-name-settled").start()
    n = agent.wait_state("node2", "ready", 10)
    assert "name_note" not in n, n
    bdr.sql("UPDATE bdr.emulation_control SET is_active = false", dbname="node2")
    try:
        agent.wait_state("node2", "down", 5)
    finally:
        bdr.sql("UPDATE bdr.emulation_control SET is_active = true", dbname="node2")
    agent.wait_state("node2", "ready", 5)
    agent.stop()
