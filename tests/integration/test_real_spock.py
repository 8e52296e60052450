"""Spock 5.0.11, for real: a two-node Spock cluster on Debian's
PostgreSQL 15 (Spock built from $PGBDR_PEERS by tests/peers/build.sh,
with the shim that lets 5.0.x build on stock PostgreSQL), watched by one
agent that connects as pgbdr_monitor with only sql/grants/spock.sql and
detects the flavor.

Every state here is produced by Spock itself: both nodes replicating, a
disabled subscription, a stopped provider, lag under load. The shape of
real spock.lag_tracker is compared with the emulation's
(fixtures/spock_emulation.sql), which stays for what two real nodes
cannot show here: three-node partial failures and a lag held still.
"""

import os
import threading
import time

import pytest

import harness
import peers
from harness import FAST_AGENT, FIXTURES_DIR, PgServer, wait_for

pytestmark = pytest.mark.peers
peers.require()

NODES = ("n1", "n2")
DB = "app"
SERVING = ("ready", "degraded")
POLICY = {"drain_lag": "4MB", "max_lag": "16MB", "min_weight": 10}


def spock_conf():
    conf = {"shared_preload_libraries": "'spock'"}
    if harness._pg_has_setting("output_plugin_libraries"):
        # Debian 15.19+: only listed output plugins may be used.
        conf["output_plugin_libraries"] = "'pgoutput, spock_output'"
    return conf


def q(pg, query, params=None):
    return pg.sql(query, params, dbname=DB)


def sub_name(local, provider):
    return f"sub_{local}_{provider}"


@pytest.fixture(scope="module")
def cluster(module_registry, module_password):
    peers.build("spock")
    out = {}
    for name in NODES:
        pg = PgServer(module_registry, name, pglogical=False, extra_conf=spock_conf())
        out[name] = pg.init().start()
        pg.create_database(DB)
        q(pg, "CREATE EXTENSION spock")
        q(pg, "SELECT spock.node_create(node_name := %s, dsn := %s)", (name, pg.dsn_socket(DB)))
        q(pg, "CREATE TABLE load (id bigint PRIMARY KEY, pad text)")
        q(pg, "SELECT spock.repset_add_all_tables('default', ARRAY['public'])")
    for local, provider in (("n1", "n2"), ("n2", "n1")):
        q(out[local], "SELECT spock.sub_create(subscription_name := %s, provider_dsn := %s)",
          (sub_name(local, provider), out[provider].dsn_socket(DB)))
    for local, provider in (("n1", "n2"), ("n2", "n1")):
        conn = out[local].connect(dbname=DB)
        try:
            with conn.cursor() as cur:
                cur.execute("SET statement_timeout = '120s'")
                cur.execute("SELECT spock.sub_wait_for_sync(%s)", (sub_name(local, provider),))
        finally:
            conn.close()
    for pg in out.values():
        pg.apply_grants("spock", dbname=DB, password=module_password)
    return out


@pytest.fixture(scope="module")
def agent(module_registry, cluster, module_password):
    sections = [("agent", dict(FAST_AGENT)), ("policy", POLICY)]
    for n in NODES:
        sections.append((f"node.{n}", {"dsn": cluster[n].tcp_dsn(DB, password=module_password)}))
    a = harness.Agent(module_registry, sections, name="agent-real-spock").start()
    for n in NODES:
        a.wait_state(n, "ready", 60)
    return a


def both_ready(agent, timeout=60):
    for n in NODES:
        agent.wait_state(n, "ready", timeout)


def test_replicates_both_ways(cluster):
    q(cluster["n1"], "INSERT INTO load VALUES (1, 'from n1')")
    q(cluster["n2"], "INSERT INTO load VALUES (2, 'from n2')")
    for n in NODES:
        wait_for(lambda: cluster[n].scalar("SELECT count(*) FROM load WHERE id IN (1, 2)",
                                           dbname=DB) == 2, 30, desc=f"{n} has both rows")


def test_least_privilege_role_reads_real_spock(cluster, agent):
    """sql/grants/spock.sql is enough on real Spock 5: the agent, as
    pgbdr_monitor (no superuser, no replication), detects the flavor and
    sees both nodes ready with a known lag."""
    for n in NODES:
        assert cluster[n].scalar("SELECT rolsuper OR rolreplication FROM pg_roles"
                                 " WHERE rolname = 'pgbdr_monitor'") is False
        st = agent.node(n)
        assert st["flavor"] == "spock" and st["state"] == "ready" and st["weight"] == 100, st
        assert st["user"] == "pgbdr_monitor", st
        wait_for(lambda: isinstance(agent.node(n)["lag_bytes"], int), 30,
                 desc=f"{n} lag known")


def view_columns(pg, dbname):
    return [r[0] for r in pg.sql(
        "SELECT attname FROM pg_attribute WHERE attrelid = 'spock.lag_tracker'::regclass"
        " AND attnum > 0 AND NOT attisdropped ORDER BY attnum", dbname=dbname)]


def test_emulated_lag_tracker_has_the_real_shape(cluster):
    """fixtures/spock_emulation.sql's lag_tracker has real 5.0.x's columns
    (last_received_lsn; no commit_lsn or received_lsn)."""
    real = view_columns(cluster["n1"], DB)
    assert "last_received_lsn" in real and "commit_lsn" not in real, real
    cluster["n1"].create_database("emu")
    cluster["n1"].run_file(os.path.join(FIXTURES_DIR, "spock_emulation.sql"), dbname="emu")
    assert view_columns(cluster["n1"], "emu") == real


def test_disabled_subscription_is_down(cluster, agent):
    both_ready(agent)
    q(cluster["n2"], "SELECT spock.sub_disable(%s)", (sub_name("n2", "n1"),))
    try:
        st = agent.wait_state("n2", "down", 30, reason_re=r"disabled")
        assert sub_name("n2", "n1") in st["reason"], st
        assert agent.node("n1")["state"] in SERVING
    finally:
        q(cluster["n2"], "SELECT spock.sub_enable(%s)", (sub_name("n2", "n1"),))
    both_ready(agent)


def test_stopped_provider(cluster, agent):
    """n1 stopped: n1 is down (no connection); n2, whose only
    subscription has lost its provider, no longer reads as plain ready
    and names n1. Both are ready again once n1 is back."""
    both_ready(agent)
    cluster["n1"].stop()
    try:
        agent.wait_state("n1", "down", 30)

        def n2_impaired():
            st = agent.node("n2")
            return st if st["state"] != "ready" else False
        st = wait_for(n2_impaired, 60, desc="n2 sees its provider gone")
        assert "n1" in st["reason"], st
    finally:
        cluster["n1"].start()
    both_ready(agent, timeout=90)


def test_lag_under_load(cluster, agent):
    """Writes on n1 for a few seconds: both nodes keep a known lag, and
    stop serving only for it (how far n2 falls behind depends on how fast
    this machine applies); both are ready once n2 has caught up."""
    both_ready(agent)
    samples = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            for n in NODES:
                samples.append((n, agent.node(n)))
            time.sleep(0.2)
    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        next_id = 1000
        t_end = time.monotonic() + 6
        while time.monotonic() < t_end:
            q(cluster["n1"], "INSERT INTO load SELECT g, repeat('x', 500)"
                             " FROM generate_series(%s, %s) g", (next_id, next_id + 1999))
            next_id += 2000
    finally:
        stop.set()
        t.join(5)
    assert samples
    for n, st in samples:
        assert isinstance(st["lag_bytes"], int), (n, st)
        if st["state"] not in SERVING:  # over max_lag, or rising back from it
            assert "lag" in st["reason"], (n, st)
    wait_for(lambda: cluster["n2"].scalar("SELECT count(*) FROM load", dbname=DB) ==
             cluster["n1"].scalar("SELECT count(*) FROM load", dbname=DB), 120,
             desc="n2 caught up")
    both_ready(agent)
