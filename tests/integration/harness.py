"""
Integration-test harness for pgbdr-agent.

Real PostgreSQL 15 servers (PgServer), the agent binary (Agent) and
HAProxy (HAProxy), each in a private temporary directory, each cleaned
up by PID even when a test fails.  Importable from pytest (see
conftest.py) and from plain scripts (a demo), e.g.:

    from harness import Registry, PgServer, Agent
    reg = Registry()
    try:
        pg = reg.add(PgServer(reg.mkdtemp("pg"), "n1")); pg.init(); pg.start()
        ...
    finally:
        reg.cleanup()

Nothing here sleeps to assert: callers poll with wait_for().
"""

import atexit
import csv
import io
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PG_BIN = os.environ.get("PGBDR_PG_BIN", "/usr/lib/postgresql/15/bin")
PG_OS_USER = "postgres"
MONITOR_ROLE = "pgbdr_monitor"
GRANTS_DIR = os.path.join(ROOT, "sql", "grants")
FIXTURES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
HAPROXY_EXAMPLES = os.path.join(ROOT, "haproxy-examples")
# The HAProxy under test: .ci/run sets it to each version of its matrix.
HAPROXY_BIN = os.environ.get("PGBDR_HAPROXY", "haproxy")


def haproxy_version():
    """(major, minor) of HAPROXY_BIN, e.g. (2, 6)."""
    out = subprocess.run([HAPROXY_BIN, "-v"], capture_output=True, text=True).stdout
    m = re.search(r"version (\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2)))


def agent_binary():
    return os.environ.get("PGBDR_AGENT", os.path.join(ROOT, "build", "agent", "pgbdr-agent"))


def new_password():
    """A distinctive password, so a leak is unmistakable in any output."""
    return "S3cret-" + secrets.token_hex(8)


# --------------------------------------------------------------------------
# Secrets and captured output: every password handed to a test is
# remembered, and every output the harness captures (agent logs, CLI
# output, HTTP replies) can be checked for it.
# --------------------------------------------------------------------------

class Captured:
    def __init__(self):
        self.secrets = set()
        self.texts = []          # (label, text)
        self.files = []          # (label, path)

    def secret(self, pw):
        self.secrets.add(pw)
        return pw

    def text(self, label, data):
        if isinstance(data, bytes):
            data = data.decode("utf-8", "replace")
        if len(self.texts) < 20000:
            self.texts.append((label, data))

    def file(self, label, path):
        self.files.append((label, path))

    def leaks(self):
        """List of (label, secret) for every captured output that contains a secret."""
        found = []
        items = list(self.texts)
        for label, path in self.files:
            try:
                with open(path, "rb") as f:
                    items.append((label, f.read().decode("utf-8", "replace")))
            except FileNotFoundError:
                pass
        for label, text in items:
            for s in self.secrets:
                if s in text:
                    found.append((label, s))
        return found

    def reset(self):
        self.texts.clear()
        self.files.clear()


CAPTURED = Captured()


# --------------------------------------------------------------------------
# Small utilities
# --------------------------------------------------------------------------

# Ports handed out by free_port(): below the kernel's ephemeral range
# (32768-60999), so that no socket bound to port 0 takes one, and one
# block of PORT_BLOCK per pytest-xdist worker (PYTEST_XDIST_WORKER is
# gw0, gw1...), so that two workers never hand out the same port in the
# time between free_port() and the server's bind().
PORT_BASE = 10000
PORT_BLOCK = 2500
_next_port = [secrets.randbelow(PORT_BLOCK)]  # two plain pytest runs at once start apart


def _port_block():
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    k = int(worker[2:]) + 1 if worker.startswith("gw") and worker[2:].isdigit() else 0
    if k >= (32768 - PORT_BASE) // PORT_BLOCK:
        raise RuntimeError(f"too many pytest-xdist workers for the port blocks: {worker}")
    return PORT_BASE + k * PORT_BLOCK


def free_port():
    """A free TCP port on 127.0.0.1: the next one of this process's block
    that binds (cycling through the block)."""
    base = _port_block()
    for _ in range(PORT_BLOCK):
        port = base + _next_port[0] % PORT_BLOCK
        _next_port[0] += 1
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {base}..{base + PORT_BLOCK - 1}")


def wait_for(predicate, timeout, interval=0.05, desc="condition"):
    """Poll predicate() every interval seconds until it returns a truthy
    value (returned) or timeout seconds pass (AssertionError naming the
    last value or exception)."""
    deadline = time.monotonic() + timeout
    last = None
    last_exc = None
    while True:
        try:
            last = predicate()
            last_exc = None
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - report it on timeout
            last_exc = e
        if time.monotonic() >= deadline:
            detail = f"last exception: {last_exc!r}" if last_exc else f"last value: {last!r}"
            raise AssertionError(f"timed out after {timeout}s waiting for {desc}; {detail}")
        time.sleep(interval)


def _become_subreaper():
    """Make this process the reaper of orphaned descendants. pg_ctl
    double-forks the postmaster, so it would be reparented to PID 1;
    in a container PID 1 may never reap, and a zombie postmaster still
    "owns" its lock files for a restarted server (kill(pid, 0) works on
    zombies). As subreaper we reap our own dead servers."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except Exception:  # noqa: BLE001 - best effort
        pass


_become_subreaper()


def reap(pids):
    for p in pids:
        try:
            os.waitpid(p, os.WNOHANG)
        except ChildProcessError:
            pass


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (FileNotFoundError, IndexError):
        return False


def children_of(pid):
    """Direct children of pid, from /proc."""
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                kids.append(int(entry))
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
    return kids


def process_tree(pid):
    out = []
    todo = [pid]
    while todo:
        p = todo.pop()
        for c in children_of(p):
            if c not in out:
                out.append(c)
                todo.append(c)
    return out


def signal_quiet(pid, sig):
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def run_as_postgres(args, **kw):
    return subprocess.run(["runuser", "-u", PG_OS_USER, "--"] + args, **kw)


def chown_postgres(path):
    pw = pwd.getpwnam(PG_OS_USER)
    for dirpath, dirnames, filenames in os.walk(path):
        os.chown(dirpath, pw.pw_uid, pw.pw_gid)
        for name in filenames:
            try:
                os.chown(os.path.join(dirpath, name), pw.pw_uid, pw.pw_gid, follow_symlinks=False)
            except FileNotFoundError:
                pass
    os.chown(path, pw.pw_uid, pw.pw_gid)


# --------------------------------------------------------------------------
# Registry: owns temp dirs and processes, cleans up everything.
# --------------------------------------------------------------------------

class Registry:
    def __init__(self, keep=False):
        self.items = []
        self.dirs = []
        self.keep = keep or bool(os.environ.get("PGBDR_KEEP_TMP"))
        atexit.register(self.cleanup)

    def mkdtemp(self, prefix):
        # Short paths: unix socket paths are limited to 107 bytes.
        d = tempfile.mkdtemp(prefix=f"pgbdr-{prefix}-", dir="/tmp")
        os.chmod(d, 0o755)
        self.dirs.append(d)
        return d

    def add(self, item):
        self.items.append(item)
        return item

    def cleanup(self):
        errors = []
        while self.items:
            item = self.items.pop()
            try:
                item.cleanup()
            except Exception as e:  # noqa: BLE001 - keep cleaning
                errors.append(repr(e))
        if not self.keep:
            while self.dirs:
                shutil.rmtree(self.dirs.pop(), ignore_errors=True)
        return errors


# --------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------

_TEMPLATES = {}  # (wal_segsize,) -> template data dir, initdb'd once per process


def _template_datadir(registry, wal_segsize):
    key = (wal_segsize,)
    path = _TEMPLATES.get(key)
    if path and os.path.isdir(path):
        return path
    base = registry.mkdtemp("tmpl")
    chown_postgres(base)
    path = os.path.join(base, "data")
    args = [os.path.join(PG_BIN, "initdb"), "-D", path, "-U", "postgres",
            "--auth-local=trust", "--auth-host=scram-sha-256",
            "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"]
    if wal_segsize:
        args.append(f"--wal-segsize={wal_segsize}")
    r = run_as_postgres(args, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"initdb failed: {r.stdout}\n{r.stderr}")
    _TEMPLATES[key] = path
    return path


_SETTINGS = None


def _pg_has_setting(name):
    global _SETTINGS
    if _SETTINGS is None:
        r = subprocess.run([os.path.join(PG_BIN, "postgres"), "--describe-config"],
                           capture_output=True, text=True, user=PG_OS_USER)
        _SETTINGS = {line.split("\t", 1)[0] for line in r.stdout.splitlines()}
    return name in _SETTINGS


class PgServer:
    """One PostgreSQL 15 server in its own temp dir, run as OS user postgres.

    Superuser access (sql()) goes over the unix socket in the temp dir
    with trust; TCP on 127.0.0.1 requires scram-sha-256 passwords, so a
    monitored connection via 127.0.0.1 really uses its password.
    """

    def __init__(self, registry, name, wal_segsize=None, pglogical=True, extra_conf=None):
        self.registry = registry
        self.name = name
        self.base = registry.mkdtemp(f"pg-{name}")
        self.datadir = os.path.join(self.base, "data")
        self.sockdir = self.base
        self.logfile = os.path.join(self.base, "postgres.log")
        self.port = free_port()
        self.wal_segsize = wal_segsize
        self.pglogical = pglogical
        self.extra_conf = extra_conf or {}
        self._paused = []
        registry.add(self)

    # -- setup --------------------------------------------------------
    def settings(self):
        s = {
            "port": self.port,
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.sockdir}'",
            "wal_level": "logical",
            "max_wal_senders": 10,
            "max_replication_slots": 10,
            "max_worker_processes": 16,
            "hot_standby": "on",
            "hot_standby_feedback": "on",
            "wal_receiver_status_interval": "1s",
            "track_commit_timestamp": "on",
            "password_encryption": "'scram-sha-256'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "32MB",
            "max_connections": 50,
            "logging_collector": "off",
            "log_line_prefix": "'%m [%p] %q%u@%d '",
            "log_min_messages": "warning",
        }
        if self.pglogical:
            s["shared_preload_libraries"] = "'pglogical'"
            if _pg_has_setting("output_plugin_libraries"):
                # Debian's 15.x hardening: logical decoding plugins must be
                # listed to be used by REPLICATION (non-superuser) roles.
                s["output_plugin_libraries"] = "'pgoutput, test_decoding, pglogical_output'"
        s.update(self.extra_conf)
        return s

    def _write_conf(self):
        lines = ["", "# --- pgbdr-agent integration tests ---"]
        for k, v in self.settings().items():
            lines.append(f"{k} = {v}")
        with open(os.path.join(self.datadir, "postgresql.conf"), "a") as f:
            f.write("\n".join(lines) + "\n")
        with open(os.path.join(self.datadir, "pg_hba.conf"), "w") as f:
            f.write(
                "# pgbdr-agent integration tests\n"
                "local   all          all                    trust\n"
                "local   replication  all                    trust\n"
                "host    all          all   127.0.0.1/32     scram-sha-256\n"
                "host    replication  all   127.0.0.1/32     scram-sha-256\n")

    def init(self):
        """Create the data dir (a copy of a once-per-session initdb)."""
        tmpl = _template_datadir(self.registry, self.wal_segsize)
        shutil.copytree(tmpl, self.datadir, symlinks=True)
        os.chmod(self.datadir, 0o700)
        self._write_conf()
        chown_postgres(self.base)
        return self

    # -- lifecycle ----------------------------------------------------
    def pg_ctl(self, *args, check=True, timeout=90):
        r = run_as_postgres([os.path.join(PG_BIN, "pg_ctl"), "-D", self.datadir] + list(args),
                            capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"pg_ctl {' '.join(args)} failed ({r.returncode}):\n"
                               f"{r.stdout}\n{r.stderr}\n--- log ---\n{self.log_tail()}")
        return r

    def start(self):
        self.pg_ctl("-l", self.logfile, "-w", "-t", "60", "-o", "-c logging_collector=off", "start")
        return self

    def stop(self, mode="fast"):
        self.resume()
        pid = self.postmaster_pid()
        if pid is None:
            return
        kids = process_tree(pid)
        r = self.pg_ctl("-m", mode, "-w", "-t", "30", "stop", check=False)
        reap([pid] + kids)
        if r.returncode != 0 or pid_alive(pid):
            self.kill()

    def restart(self):
        self.stop()
        self.start()

    def postmaster_pid(self):
        try:
            with open(os.path.join(self.datadir, "postmaster.pid")) as f:
                pid = int(f.readline().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def kill(self):
        """SIGKILL the postmaster and all its children (a crash)."""
        pid = self.postmaster_pid()
        if pid is None:
            return
        kids = process_tree(pid)
        for p in [pid] + kids:
            signal_quiet(p, signal.SIGCONT)
        signal_quiet(pid, signal.SIGKILL)
        for p in kids + process_tree(pid):
            signal_quiet(p, signal.SIGKILL)
        everyone = [pid] + kids

        def dead():
            reap(everyone)
            return not any(pid_alive(p) for p in everyone)
        wait_for(dead, 15, desc=f"{self.name} processes to die")
        # A crash leaves the pid file and socket lock behind; a later
        # start() checks their PID, which may be a zombie or reused.
        for f in [os.path.join(self.datadir, "postmaster.pid"),
                  os.path.join(self.sockdir, f".s.PGSQL.{self.port}.lock")]:
            try:
                os.unlink(f)
            except FileNotFoundError:
                pass

    def pause(self):
        """SIGSTOP the postmaster and every child, so that open
        connections hang too (stopping only the postmaster would leave
        existing backends answering)."""
        pid = self.postmaster_pid()
        assert pid, f"{self.name} is not running"
        stopped = [pid]
        signal_quiet(pid, signal.SIGSTOP)
        # With the postmaster stopped no new child appears; loop until
        # the set of children is stable, in case one forked meanwhile.
        while True:
            kids = [k for k in process_tree(pid) if k not in stopped]
            if not kids:
                break
            for k in kids:
                signal_quiet(k, signal.SIGSTOP)
                stopped.append(k)
        self._paused = stopped
        return stopped

    def resume(self):
        for p in reversed(self._paused):
            signal_quiet(p, signal.SIGCONT)
        self._paused = []

    def cleanup(self):
        try:
            self.stop(mode="immediate")
        finally:
            pid = self.postmaster_pid()
            if pid:
                self.kill()

    def log_tail(self, n=4000):
        try:
            with open(self.logfile, "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    # -- SQL ----------------------------------------------------------
    def dsn_socket(self, dbname="postgres", user="postgres"):
        return f"host={self.sockdir} port={self.port} dbname={dbname} user={user}"

    def connect(self, dbname="postgres", user="postgres", autocommit=True):
        import psycopg2
        conn = psycopg2.connect(host=self.sockdir, port=self.port, dbname=dbname, user=user,
                                connect_timeout=10)
        conn.autocommit = autocommit
        return conn

    def sql(self, query, params=None, dbname="postgres", user="postgres"):
        """Run one statement (or a parameterless script) as superuser over
        the unix socket, autocommit. Returns all rows, or None."""
        conn = self.connect(dbname=dbname, user=user)
        try:
            with conn.cursor() as cur:
                cur.execute(query, params)
                if cur.description is not None:
                    return cur.fetchall()
                return None
        finally:
            conn.close()

    def scalar(self, query, params=None, dbname="postgres", user="postgres"):
        rows = self.sql(query, params, dbname=dbname, user=user)
        return rows[0][0] if rows else None

    def run_file(self, path, dbname="postgres"):
        with open(path) as f:
            self.sql(f.read(), dbname=dbname)

    def create_database(self, dbname):
        self.sql(f'CREATE DATABASE "{dbname}"')

    def tcp_dsn(self, dbname, user=MONITOR_ROLE, password=None, **extra):
        parts = ["host=127.0.0.1", f"port={self.port}", f"dbname={dbname}", f"user={user}"]
        if password is not None:
            parts.append(f"password={password}")
        parts += [f"{k}={v}" for k, v in extra.items()]
        return " ".join(parts)

    # -- least-privilege monitoring role ---------------------------------
    def apply_grants(self, flavor, dbname="postgres", password=None, role=MONITOR_ROLE):
        """Run sql/grants/<flavor>.sql in dbname. The CREATE ROLE line is
        skipped when the (cluster-wide) role already exists. Sets the
        password when one is given."""
        path = os.path.join(GRANTS_DIR, f"{flavor}.sql")
        with open(path) as f:
            script = f.read()
        if role != MONITOR_ROLE:
            script = script.replace(MONITOR_ROLE, role)
        exists = self.scalar("SELECT count(*) FROM pg_roles WHERE rolname = %s", (role,))
        if exists:
            script = re.sub(rf"(?im)^\s*CREATE\s+ROLE\s+{role}\b[^;]*;", "", script)
        self.sql(script, dbname=dbname)
        if password is not None:
            self.set_password(password, role=role)
        return path

    def set_password(self, password, role=MONITOR_ROLE):
        from psycopg2 import sql as psql
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(psql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    psql.Identifier(role), psql.Literal(password)))
        finally:
            conn.close()

    # -- physical replication ---------------------------------------------
    def create_standby(self, name):
        """pg_basebackup -R from this (running) server into a new PgServer,
        started, streaming from this one over the unix socket."""
        sb = PgServer(self.registry, name, wal_segsize=self.wal_segsize,
                      pglogical=self.pglogical, extra_conf=self.extra_conf)
        chown_postgres(sb.base)
        r = run_as_postgres([os.path.join(PG_BIN, "pg_basebackup"), "-D", sb.datadir, "-R",
                             "-X", "stream", "-c", "fast", "--no-sync",
                             "-h", self.sockdir, "-p", str(self.port), "-U", "postgres",
                             ],
                            capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"pg_basebackup failed: {r.stdout}\n{r.stderr}")
        # The copied postgresql.conf carries the primary's port and socket
        # dir; appending sb's own settings overrides them (last one wins).
        sb._write_conf()
        with open(os.path.join(sb.datadir, "postgresql.auto.conf"), "a") as f:
            f.write(f"primary_conninfo = '{self.dsn_socket()} application_name={name}'\n")
        chown_postgres(sb.base)
        sb.start()
        return sb


# --------------------------------------------------------------------------
# HTTP client (raw sockets: we need to see exactly what the agent sends)
# --------------------------------------------------------------------------


def bdr_emulation_reset(pg, name, nodes):
    """Node `name` of the BDR 1 emulation (fixtures/bdr1_emulation.sql),
    ready, with the other `nodes` as its peers."""
    pg.sql("SELECT bdr.emulation_setup(%s, VARIADIC %s)",
           (name, [p for p in nodes if p != name]), dbname=name)


def bdr_emulation_server(registry, label, nodes, password):
    """One PostgreSQL server with a database per emulated BDR node, each
    ready and granted to the monitoring role."""
    pg = PgServer(registry, label, pglogical=False).init().start()
    for name in nodes:
        pg.create_database(name)
        pg.run_file(os.path.join(FIXTURES_DIR, "bdr1_emulation.sql"), dbname=name)
        bdr_emulation_reset(pg, name, nodes)
        pg.apply_grants("bdr", dbname=name, password=password)
    return pg

class HttpReply:
    def __init__(self, status, reason, version, headers, body, raw_head):
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = headers      # lower-case names -> value
        self.body = body            # bytes
        self.raw_head = raw_head

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def __iter__(self):  # (status, headers, body) unpacking
        return iter((self.status, self.headers, self.text))

    def __repr__(self):
        return f"<HttpReply {self.status} {self.headers} {self.body[:200]!r}>"


class HttpError(Exception):
    pass


def recv_reply(sock, head_request=False, deadline=None):
    """Read exactly one HTTP reply from sock, using Content-Length.
    Returns HttpReply. Extra bytes after the body are left unread only
    if they arrive later; bytes already read beyond the body raise."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        if deadline and time.monotonic() > deadline:
            raise HttpError(f"timeout reading headers, got {buf!r}")
        chunk = sock.recv(65536)
        if not chunk:
            raise HttpError(f"connection closed before end of headers, got {buf!r}")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"^HTTP/(\d\.\d) (\d{3})(?: (.*))?$", lines[0])
    if not m:
        raise HttpError(f"bad status line {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        if ":" not in line:
            raise HttpError(f"bad header line {line!r}")
        k, v = line.split(":", 1)
        k = k.strip().lower()
        if k in headers:
            raise HttpError(f"duplicate header {k!r}")
        headers[k] = v.strip()
    if "content-length" not in headers:
        raise HttpError(f"no Content-Length in reply: {head!r}")
    length = int(headers["content-length"])
    want = 0 if head_request else length
    body = rest
    while len(body) < want:
        if deadline and time.monotonic() > deadline:
            raise HttpError("timeout reading body")
        chunk = sock.recv(65536)
        if not chunk:
            raise HttpError(f"closed after {len(body)} of {want} body bytes")
        body += chunk
    if len(body) > want:
        raise HttpError(f"{len(body) - want} bytes beyond Content-Length {want} "
                        f"(head={head_request}): {body[:200]!r}")
    return HttpReply(int(m.group(2)), m.group(3) or "", m.group(1), headers, body, head)


def read_until_close(sock, timeout):
    """Bytes received until the peer closes. AssertionError if it stays open."""
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
    except socket.timeout:
        raise AssertionError(f"peer did not close within {timeout}s (got {data!r})")
    except ConnectionResetError:
        return data


# --------------------------------------------------------------------------
# The agent
# --------------------------------------------------------------------------

def ini_text(sections):
    """sections: list of (section_name, dict or list of (k, v)) -> INI text."""
    out = []
    for name, items in sections:
        out.append(f"[{name}]")
        pairs = items.items() if isinstance(items, dict) else items
        for k, v in pairs:
            out.append(f"{k} = {v}")
        out.append("")
    return "\n".join(out)


class Agent:
    """pgbdr-agent running in the foreground with a generated config."""

    def __init__(self, registry, config, name="agent", port=None, extra_args=(), env=None):
        """config: INI text, or a list of (section, items). If the
        config has no [agent] http_listen, one is added on a free port."""
        self.registry = registry
        self.base = registry.mkdtemp(name)
        self.port = port or free_port()
        if not isinstance(config, str):
            sections = list(config)
            names = [s for s, _ in sections]
            if "agent" not in names:
                sections.insert(0, ("agent", {}))
            fixed = []
            for s, items in sections:
                if s == "agent":
                    items = dict(items)
                    items.setdefault("http_listen", f"127.0.0.1:{self.port}")
                    if os.geteuid() == 0:
                        # The agent refuses to run as root: drop to nobody
                        # after binding, as in production.
                        items.setdefault("user", "nobody")
                    # the tests run as root; production configs set user =
                    if "user" not in items:
                        items.setdefault("allow_root", "yes")
                fixed.append((s, items))
            config = ini_text(fixed)
        self.config_text = config
        self.config_path = os.path.join(self.base, "pgbdr-agent.ini")
        with open(self.config_path, "w") as f:
            f.write(config)
        os.chmod(self.config_path, 0o600)
        self.logfile = os.path.join(self.base, "agent.log")
        self.extra_args = list(extra_args)
        self.env = env
        self.proc = None
        self._log = None
        CAPTURED.file(f"{name} log", self.logfile)
        registry.add(self)

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def start(self, wait=True, timeout=10):
        binary = agent_binary()
        if not os.access(binary, os.X_OK):
            raise RuntimeError(f"agent binary {binary} not found; build it "
                               f"(meson setup build && meson compile -C build) or set PGBDR_AGENT")
        if self._log:
            self._log.close()
        self._log = open(self.logfile, "ab")
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        self.proc = subprocess.Popen([binary, "-c", self.config_path] + self.extra_args,
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, env=env, cwd=self.base)
        if wait:
            self.wait_live(timeout)
        return self

    def wait_live(self, timeout=10):
        def live():
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited with {self.proc.returncode}:\n{self.log()}")
            try:
                return self.get("/live", timeout=0.5).status == 200
            except (OSError, HttpError):
                return False
        wait_for(live, timeout, desc="agent GET /live = 200")

    def stop(self, timeout=5):
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        return self.proc.returncode

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        if self._log:
            self._log.close()
            self._log = None

    def log(self):
        try:
            with open(self.logfile, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    # -- HTTP ---------------------------------------------------------
    def connect(self, timeout=2.0):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def request_raw(self, data, timeout=2.0):
        """Send raw bytes; return everything until the agent closes."""
        with self.connect(timeout) as s:
            s.sendall(data)
            out = read_until_close(s, timeout)
        CAPTURED.text("http raw", out)
        return out

    def get(self, path, method="GET", version="1.1", headers=None, timeout=2.0):
        """One request on a fresh connection; returns HttpReply, which
        also unpacks as (status, headers, body)."""
        hdrs = {"Host": "localhost", "Connection": "close"} if version == "1.1" else {}
        if headers:
            hdrs.update(headers)
        req = f"{method} {path} HTTP/{version}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        deadline = time.monotonic() + timeout
        with self.connect(timeout) as s:
            s.sendall(req.encode())
            reply = recv_reply(s, head_request=(method == "HEAD"), deadline=deadline)
        CAPTURED.text(f"http {method} {path}", reply.raw_head + b"\r\n\r\n" + reply.body)
        return reply

    def status_json(self):
        r = self.get("/status")
        assert r.status == 200, r
        assert r.headers.get("content-type", "").startswith("application/json"), r.headers
        return json.loads(r.body)

    def node(self, name=None):
        """A node's entry in /status (the default node when name is None)."""
        st = self.status_json()
        if name is None:
            name = st["default_node"]
        for n in st["nodes"]:
            if n["name"] == name:
                return n
        raise KeyError(f"no node {name!r} in /status: {[n['name'] for n in st['nodes']]}")

    def wait_for(self, predicate, timeout, desc="condition"):
        return wait_for(predicate, timeout, 0.05, desc)

    def wait_state(self, name, state, timeout, reason_re=None):
        """Wait until /status shows node `name` in `state` (and reason
        matching reason_re, case-insensitive). Returns the node entry."""
        def check():
            n = self.node(name)
            if n["state"] != state:
                return False
            if reason_re and not re.search(reason_re, n["reason"] or "", re.I):
                return False
            return n
        try:
            return wait_for(check, timeout, desc=f"node {name} state={state} reason~{reason_re}")
        except AssertionError as e:
            try:
                cur = self.node(name)
            except Exception as e2:  # noqa: BLE001
                cur = repr(e2)
            raise AssertionError(f"{e}\ncurrent: {cur}\n--- agent log tail ---\n"
                                 f"{self.log()[-3000:]}") from None

    def fd_count(self):
        return fd_count(self.proc.pid)


def run_cli(args, input=None, timeout=30, env=None):
    """Run the agent binary with args; returns CompletedProcess (bytes).
    stdout/stderr are recorded for the secret check."""
    e = dict(os.environ)
    if env:
        e.update(env)
    r = subprocess.run([agent_binary()] + list(args), input=input, capture_output=True,
                       timeout=timeout, env=e)
    CAPTURED.text(f"cli {args} stdout", r.stdout)
    CAPTURED.text(f"cli {args} stderr", r.stderr)
    return r


def write_config(registry, sections, name="cfg"):
    d = registry.mkdtemp(name)
    path = os.path.join(d, "pgbdr-agent.ini")
    with open(path, "w") as f:
        f.write(sections if isinstance(sections, str) else ini_text(sections))
    return path


# --------------------------------------------------------------------------
# HAProxy
# --------------------------------------------------------------------------

class HAProxy:
    """haproxy -f <example file> -db, configured only by environment
    variables that the file references as "${VAR}"."""

    def __init__(self, registry, cfg_file, env):
        self.registry = registry
        self.base = registry.mkdtemp("haproxy")
        self.cfg = cfg_file if os.path.isabs(cfg_file) else os.path.join(HAPROXY_EXAMPLES, cfg_file)
        self.stats_socket = os.path.join(self.base, "stats.sock")
        self.env = dict(env)
        self.env["PGBDR_STATS_SOCKET"] = self.stats_socket
        self.logfile = os.path.join(self.base, "haproxy.log")
        self.proc = None
        self._log = None
        registry.add(self)

    def _env(self):
        e = {k: v for k, v in os.environ.items() if not k.startswith("PGBDR_")}
        e.update({k: str(v) for k, v in self.env.items()})
        return e

    def check_config(self):
        return subprocess.run([HAPROXY_BIN, "-c", "-f", self.cfg], env=self._env(),
                              capture_output=True, text=True, timeout=30)

    def start(self, timeout=10):
        self._log = open(self.logfile, "ab")
        self.proc = subprocess.Popen([HAPROXY_BIN, "-f", self.cfg, "-db"], env=self._env(),
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=self.base)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"haproxy exited {self.proc.returncode}:\n{self.log()}")
            return os.path.exists(self.stats_socket) and self.show_stat()
        wait_for(ready, timeout, desc="haproxy stats socket")
        return self

    def log(self):
        try:
            with open(self.logfile, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def command(self, cmd):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(self.stats_socket)
            s.sendall(cmd.encode() + b"\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        return data.decode("utf-8", "replace")

    def show_stat(self):
        text = self.command("show stat")
        lines = [l for l in text.splitlines() if l.strip()]
        if not lines or not lines[0].startswith("# "):
            return []
        lines[0] = lines[0][2:]
        return list(csv.DictReader(io.StringIO("\n".join(lines))))

    def server(self, backend, name):
        for row in self.show_stat():
            if row["pxname"] == backend and row["svname"] == name:
                return row
        raise KeyError(f"no server {backend}/{name}")

    def wait_for_status(self, backend, server, status, timeout):
        """Wait until the server's status column is exactly status ('UP',
        'DOWN'; 'UP 1/2' is still going down) as the result of a finished
        check: HAProxy starts servers UP with check_status INI."""
        def check():
            row = self.server(backend, server)
            cs = row["check_status"].lstrip("* ")
            return row if row["status"] == status and cs not in ("INI", "") else False
        try:
            return wait_for(check, timeout, desc=f"haproxy {backend}/{server} {status}")
        except AssertionError as e:
            raise AssertionError(f"{e}\nnow: {self.server(backend, server)}\n"
                                 f"--- haproxy log ---\n{self.log()[-3000:]}") from None

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def cleanup(self):
        self.stop()
        if self._log:
            self._log.close()
            self._log = None


# --------------------------------------------------------------------------
# Config helpers shared by the tests
# --------------------------------------------------------------------------

# A fast agent: probe every 200 ms, fail a probe after 1 s, no hysteresis.
FAST_AGENT = {"interval": "200ms", "timeout": "1s", "rise": 1, "fall": 1, "log_level": "debug"}


def node_section(pg, password, dbname="app", flavor="plain", **extra):
    """[node.NAME] items: DSN over 127.0.0.1 with password auth as the
    monitoring role."""
    items = {"dsn": pg.tcp_dsn(dbname, password=password)}
    if flavor:
        items["flavor"] = flavor
    items.update(extra)
    return items
