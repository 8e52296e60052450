"""Physical replication: a real primary and a real streaming standby.

The agent connects as pgbdr_monitor with only sql/grants/physical.sql
(pg_monitor), over 127.0.0.1 with scram-sha-256.
"""

import json
import math

import pytest

from harness import FAST_AGENT, Agent, PgServer, run_cli, wait_for, write_config, node_section

READ_ONLY_RE = r"read.?only|standby|recovery"


@pytest.fixture(scope="module")
def cluster(module_registry, module_password):
    primary = PgServer(module_registry, "primary", pglogical=False).init().start()
    primary.create_database("app")
    primary.apply_grants("physical", dbname="app", password=module_password)
    primary.sql("CREATE TABLE t (id serial PRIMARY KEY, v text)", dbname="app")
    standby = primary.create_standby("standby")
    wait_for(lambda: primary.sql("SELECT 1 FROM pg_stat_replication WHERE state = 'streaming'"),
             30, desc="standby streaming")
    assert standby.scalar("SELECT pg_is_in_recovery()") is True
    # The role and its password reached the standby by replication.
    wait_for(lambda: standby.scalar("SELECT count(*) FROM pg_roles WHERE rolname = 'pgbdr_monitor'"),
             10, desc="role replicated")
    return primary, standby


def sections(primary, standby, password, read_only, standby_first=False):
    nodes = [("node.primary", node_section(primary, password, flavor="physical", priority=1)),
             ("node.standby", node_section(standby, password, flavor="physical", priority=2))]
    if standby_first:
        nodes.reverse()
    return [("agent", dict(FAST_AGENT)), ("policy", {"read_only": read_only})] + nodes


@pytest.fixture(scope="module")
def agent_ro_down(module_registry, cluster, module_password):
    primary, standby = cluster
    return Agent(module_registry, sections(primary, standby, module_password, "down"),
                 name="agent-rodown").start()


@pytest.fixture(scope="module")
def agent_ro_ready(module_registry, cluster, module_password):
    primary, standby = cluster
    return Agent(module_registry, sections(primary, standby, module_password, "ready"),
                 name="agent-roready").start()


def test_primary_ready(agent_ro_down):
    n = agent_ro_down.wait_state("primary", "ready", 10)
    assert n["flavor"] == "physical"
    assert n["read_only"] is False
    assert n["weight"] == 100
    assert n["user"] == "pgbdr_monitor"
    assert n["host"] == "127.0.0.1"
    assert n["checked_at"] is not None
    st = agent_ro_down.status_json()
    assert st["default_node"] == "primary"
    r = agent_ro_down.get("/")
    assert r.status == 200, r
    assert "ready" in r.text and "primary" in r.text
    r = agent_ro_down.get("/node/primary")
    assert r.status == 200 and "ready" in r.text, r


def test_standby_down_when_read_only_is_down(agent_ro_down):
    n = agent_ro_down.wait_state("standby", "down", 10, reason_re=READ_ONLY_RE)
    assert n["flavor"] == "physical"
    assert n["read_only"] is True
    assert n["weight"] == 0
    r = agent_ro_down.get("/node/standby")
    assert r.status == 503, r
    assert "down" in r.text and "standby" in r.text


def test_standby_ready_when_read_only_is_ready(agent_ro_ready):
    n = agent_ro_ready.wait_state("standby", "ready", 10)
    assert n["read_only"] is True
    r = agent_ro_ready.get("/node/standby")
    assert r.status == 200 and "ready" in r.text, r
    # The primary is unaffected by the read-only policy.
    agent_ro_ready.wait_state("primary", "ready", 10)


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def test_standby_lag_fields_are_numbers(cluster, agent_ro_ready):
    primary, standby = cluster
    # Make the standby replay something, so that a replay timestamp exists.
    primary.sql("INSERT INTO t (v) SELECT 'x' FROM generate_series(1, 100)", dbname="app")
    wait_for(lambda: standby.scalar("SELECT count(*) FROM t", dbname="app") == 100, 10,
             desc="standby replayed")

    def lag_known():
        n = agent_ro_ready.node("standby")
        return n if is_number(n["lag_bytes"]) and is_number(n["lag_seconds"]) else False
    n = wait_for(lag_known, 10, desc="standby lag_bytes and lag_seconds known")
    assert isinstance(n["lag_bytes"], int)
    assert 0 <= n["lag_bytes"] < 16 * 1024 * 1024
    assert 0 <= n["lag_seconds"] < 60


def test_standby_lag_appears_when_replay_is_paused(cluster, agent_ro_ready):
    primary, standby = cluster
    standby.sql("SELECT pg_wal_replay_pause()")
    try:
        primary.sql("INSERT INTO t (v) SELECT repeat('y', 1000) FROM generate_series(1, 3000)",
                    dbname="app")
        # The insert's WAL (~3 MB) reaches the standby but is not replayed.
        wait_for(lambda: standby.scalar(
            "SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())")
            > 2 * 1024 * 1024, 15, desc="standby received but not replayed")

        def lag_big():
            n = agent_ro_ready.node("standby")
            return n if is_number(n["lag_bytes"]) and n["lag_bytes"] >= 1024 * 1024 else False
        wait_for(lag_big, 10, desc="agent sees the replay lag")
    finally:
        standby.sql("SELECT pg_wal_replay_resume()")
    wait_for(lambda: agent_ro_ready.node("standby")["lag_bytes"] < 1024 * 1024, 10,
             desc="lag back to small after replay resumes")


def test_once_json_primary_default(registry, cluster, module_password):
    primary, standby = cluster
    path = write_config(registry, sections(primary, standby, module_password, "down"), "once")
    r = run_cli(["-c", path, "--once", "--json"])
    assert r.returncode == 0, (r.stdout, r.stderr)
    data = json.loads(r.stdout)
    nodes = {n["name"]: n for n in data["nodes"]}
    assert data["default_node"] == "primary"
    assert nodes["primary"]["state"] == "ready"
    assert nodes["standby"]["state"] == "down"
    assert nodes["standby"]["read_only"] is True
    assert module_password not in r.stdout.decode() + r.stderr.decode()


def test_once_json_standby_default_exits_1(registry, cluster, module_password):
    primary, standby = cluster
    path = write_config(registry, sections(primary, standby, module_password, "down",
                                           standby_first=True), "once-sb")
    r = run_cli(["-c", path, "--once", "--json"])
    assert r.returncode == 1, (r.stdout, r.stderr)
    data = json.loads(r.stdout)
    assert data["default_node"] == "standby"
    nodes = {n["name"]: n for n in data["nodes"]}
    assert nodes["standby"]["state"] == "down"
    assert nodes["primary"]["state"] == "ready"


def test_once_json_standby_default_ready_policy_exits_0(registry, cluster, module_password):
    primary, standby = cluster
    path = write_config(registry, sections(primary, standby, module_password, "ready",
                                           standby_first=True), "once-sb2")
    r = run_cli(["-c", path, "--once", "--json"])
    assert r.returncode == 0, (r.stdout, r.stderr)
    nodes = {n["name"]: n for n in json.loads(r.stdout)["nodes"]}
    assert nodes["standby"]["state"] == "ready"
