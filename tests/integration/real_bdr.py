"""
A real BDR 1.0 cluster for the integration tests: 2ndQuadrant's patched
PostgreSQL 9.4 with the BDR 1.0 plugin, built by tests/peers/build.sh
(peers.build("bdr")), one server per node in its own temp dir, run as
OS user postgres like harness.PgServer.

PostgreSQL 9.4 has no SCRAM: TCP connections on 127.0.0.1 use md5
passwords. BDR's own connections between nodes go over each node's
unix socket with trust.
"""

import os
import threading

from harness import PgServer, chown_postgres, run_as_postgres

BDR_DB = "app"


class BdrServer(PgServer):
    """One BDR 1.0 node on PostgreSQL 9.4 (prefix: the install prefix)."""

    def __init__(self, registry, name, prefix):
        self.bindir = os.path.join(prefix, "bin")
        super().__init__(registry, name, pglogical=False)

    def settings(self):
        return {
            "port": self.port,
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.sockdir}'",
            "shared_preload_libraries": "'bdr'",
            "wal_level": "logical",
            "track_commit_timestamp": "on",
            "max_wal_senders": 10,
            "max_replication_slots": 10,
            "max_worker_processes": 16,
            "password_encryption": "on",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "32MB",
            "max_connections": 60,
            "logging_collector": "off",
            "log_line_prefix": "'%m [%p] %q%u@%d '",
            "log_min_messages": "warning",
        }

    def _write_conf(self):
        super()._write_conf()
        with open(os.path.join(self.datadir, "pg_hba.conf"), "w") as f:
            f.write("# pgbdr-agent integration tests (PostgreSQL 9.4: md5)\n"
                    "local   all          all                    trust\n"
                    "local   replication  all                    trust\n"
                    "host    all          all   127.0.0.1/32     md5\n"
                    "host    replication  all   127.0.0.1/32     md5\n")

    def init(self):
        chown_postgres(self.base)
        r = run_as_postgres([os.path.join(self.bindir, "initdb"), "-D", self.datadir,
                             "-U", "postgres", "-E", "UTF8", "--locale=C", "--nosync"],
                            capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"initdb 9.4 failed: {r.stdout}\n{r.stderr}")
        self._write_conf()
        chown_postgres(self.base)
        return self

    def pg_ctl(self, *args, check=True, timeout=90):
        r = run_as_postgres([os.path.join(self.bindir, "pg_ctl"), "-D", self.datadir] + list(args),
                            capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"pg_ctl {' '.join(args)} failed ({r.returncode}):\n"
                               f"{r.stdout}\n{r.stderr}\n--- log ---\n{self.log_tail()}")
        return r

    # -- BDR ------------------------------------------------------------
    def bdr_dsn(self):
        return f"host={self.sockdir} port={self.port} dbname={BDR_DB} user=postgres"

    def q(self, query, params=None):
        return self.sql(query, params, dbname=BDR_DB)

    def prepare(self):
        """The database and extensions BDR needs, before create or join."""
        self.create_database(BDR_DB)
        self.q("CREATE EXTENSION btree_gist")
        self.q("CREATE EXTENSION bdr")
        return self

    def wait_ready(self, timeout=180):
        conn = self.connect(dbname=BDR_DB)
        try:
            with conn.cursor() as cur:
                cur.execute(f"SET statement_timeout = '{int(timeout)}s'")
                cur.execute("SELECT bdr.bdr_node_join_wait_for_ready()")
        finally:
            conn.close()

    def group_create(self):
        self.q("SELECT bdr.bdr_group_create(local_node_name := %s, node_external_dsn := %s)",
               (self.name, self.bdr_dsn()))
        self.wait_ready()

    def group_join(self, via, wait=True):
        self.q("SELECT bdr.bdr_group_join(local_node_name := %s, node_external_dsn := %s,"
               " join_using_dsn := %s)", (self.name, self.bdr_dsn(), via.bdr_dsn()))
        if wait:
            self.wait_ready()

    def status(self):
        return self.q("SELECT node_status FROM bdr.bdr_nodes WHERE node_name = %s",
                      (self.name,))


def start_join(node, via):
    """group_join in a thread: the caller watches the join as it runs.
    Returns the thread; join() it, then check thread.error."""
    t = threading.Thread(target=_join, args=(node, via), daemon=True)
    t.error = None
    t.start()
    return t


def _join(node, via):
    try:
        node.group_join(via)
    except Exception as e:  # noqa: BLE001
        threading.current_thread().error = e
