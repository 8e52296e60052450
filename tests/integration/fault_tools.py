"""
Fault-injection tools for test_faults.py and test_client_abuse.py, built
on harness.py (which is left as it is):

- FaultProxy: a TCP proxy in front of PostgreSQL (asyncio, in its own
  thread) that can stall server->client bytes in the middle of a query
  result and release them later, and can hold new connections before
  they reach the server;
- FakeDns: a UDP DNS server whose answer for one name can be switched
  between an address, NXDOMAIN and silence;
- WrappedAgent: the harness Agent started through a command prefix, e.g.
  in a private mount namespace whose /etc/resolv.conf points at FakeDns;
- Prober: a thread that asks the agent about a healthy node in a loop on
  fresh connections and records how long every answer took;
- ProcStats: fd count, VmRSS and CPU time of a process, from /proc.
"""

import asyncio
import os
import re
import shlex
import socket
import struct
import threading
import time

import harness
from harness import Agent, wait_for


# --------------------------------------------------------------------------
# /proc
# --------------------------------------------------------------------------

class ProcStats:
    def __init__(self, pid):
        self.pid = pid

    def fds(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def rss_kb(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError(f"no VmRSS for {self.pid}")

    def cpu_seconds(self):
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def binary_uses_asan(path=None):
    """ASan keeps freed memory in quarantine: RSS grows by design."""
    path = path or harness.agent_binary()
    try:
        with open(path, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


def report(data):
    """Append one JSON line to $PGBDR_FAULT_REPORT, when set: the
    measured timings, for people tuning bounds or comparing machines."""
    import json
    path = os.environ.get("PGBDR_FAULT_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(data) + "\n")


# --------------------------------------------------------------------------
# A tiny HTTP client for sampling loops (no CAPTURED bookkeeping per call)
# --------------------------------------------------------------------------

def http_get(port, path, timeout=2.0):
    """GET on a fresh connection -> (status, body text, seconds)."""
    t0 = time.perf_counter()
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        reply = harness.recv_reply(s, deadline=deadline)
    return reply.status, reply.text, time.perf_counter() - t0


def node_line(agent, name, timeout=2.0):
    """(state, reason) of a node from the one-line /node/NAME body."""
    _, body, _ = http_get(agent.port, f"/node/{name}", timeout)
    m = re.match(r"^(\w+) (\S+) weight=\d+%[^:\n]*(?:: (.*))?$", body.strip())
    assert m, f"unexpected /node/{name} body {body!r}"
    return m.group(1), m.group(3) or ""


class Prober:
    """GET /node/NAME in a loop on fresh connections, in a separate
    process (so that the test's own threads and GIL cannot slow it
    down); records (start monotonic, seconds, status or error text).
    CLOCK_MONOTONIC is system-wide: the times compare with the test's.

    Two more threads of that process watch the machine itself: one asks
    a control server (a trivial HTTP responder, a process of its own)
    the same way, one sleeps 5 ms in a loop and notes every oversleep
    (a "hiccup"). A slow agent answer that overlaps a slow control answer
    or a hiccup happened while the machine stalled, not the agent."""

    STALL = 0.030   # a control answer or an oversleep longer than this is a stall

    def __init__(self, agent, name, pause=0.01):
        self.agent = agent
        self.path = f"/node/{name}"
        self.pause = pause
        self.samples = []
        self.control = []
        self.hiccups = []   # (start, seconds)
        self.proc = None

    def start(self):
        import subprocess
        import sys
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "probe",
                                      str(self.agent.port), self.path, str(self.pause)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        line = self.proc.stdout.readline()
        assert line.strip() == b"started", line
        return self

    def stop(self):
        import json
        if not self.proc:
            return
        out, _ = self.proc.communicate(b"", timeout=30)
        self.proc = None
        data = json.loads(out)
        self.samples = [tuple(s) for s in data["agent"]]
        self.control = [tuple(s) for s in data["control"]]
        self.hiccups = [tuple(s) for s in data["hiccups"]]

    def stalls(self):
        """Intervals (start, end) in which the machine was seen stalling."""
        out = [(t, t + d) for t, d, _ in self.control if d > self.STALL]
        out += [(t, t + d) for t, d in self.hiccups]
        return sorted(out)

    def machine_stalled(self, start, end):
        return any(a < end and b > start for a, b in self.stalls())

    def slow(self, max_seconds, control=False):
        return [s for s in (self.control if control else self.samples) if s[1] > max_seconds]

    def failures(self):
        return [s for s in self.samples if s[2] != 200]

    def unexplained_failures(self, window=1.0):
        """Failed answers without a machine stall in the `window` seconds
        before them: a stall longer than stale_after rightly takes even a
        healthy node down for a moment."""
        return [s for s in self.failures() if not self.machine_stalled(s[0] - window, s[0] + s[1])]

    def unexplained_slow(self, max_seconds):
        return [s for s in self.slow(max_seconds) if not self.machine_stalled(s[0], s[0] + s[1])]

    def check(self, max_seconds, noise_budget, min_samples=20, events=()):
        """AssertionError unless every answer was 200 and at most
        `noise_budget` (a count) of them took over max_seconds while the
        machine did not stall. events: (monotonic time, label) to place
        slow answers in time."""
        assert len(self.samples) >= min_samples, f"too few samples: {len(self.samples)}"
        bad = self.unexplained_failures()
        assert not bad, f"{self.path} failed: {bad[:10]}"
        slow = self.unexplained_slow(max_seconds)

        def near(t):
            before = [e for e in events if e[0] <= t]
            if not before:
                return ""
            e = before[-1]
            return f" {(t - e[0]) * 1000:.0f} ms after {e[1]}"
        assert len(slow) <= noise_budget, (
            f"{self.path}: {len(slow)} of {len(self.samples)} answers over "
            f"{max_seconds * 1000:.0f} ms while the machine did not stall (noise budget "
            f"{noise_budget}): "
            + "; ".join(f"{s[1] * 1000:.1f} ms{near(s[0])}" for s in slow[:20])
            + f". Machine stalls seen: {len(self.stalls())}; slow answers during them: "
            + f"{len(self.slow(max_seconds)) - len(slow)}")

    def worst_ms(self, control=False):
        return max((s[1] for s in (self.control if control else self.samples)), default=0) * 1000

    def percentile_ms(self, q, control=False):
        v = sorted(s[1] for s in (self.control if control else self.samples))
        return v[min(len(v) - 1, int(len(v) * q))] * 1000 if v else 0

    def summary(self, max_seconds):
        return {"n": len(self.samples), "p99_ms": round(self.percentile_ms(0.99), 1),
                "max_ms": round(self.worst_ms(), 1),
                "over": len(self.slow(max_seconds)),
                "over_unexplained": len(self.unexplained_slow(max_seconds)),
                "failed": len(self.failures()),
                "failed_unexplained": len(self.unexplained_failures()),
                "control_p99_ms": round(self.percentile_ms(0.99, control=True), 1),
                "control_max_ms": round(self.worst_ms(control=True), 1),
                "machine_stalls": len(self.stalls()),
                "worst_hiccup_ms": round(max((d for _, d in self.hiccups), default=0) * 1000, 1)}


_CONTROL_BODY = b"ready control weight=100% lag=0 flavor=plain\n"


def _control_main():
    """The control server: one connection at a time, like the probes."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(128)
    print(s.getsockname()[1], flush=True)
    reply = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
             b"Connection: close\r\n\r\n%s" % (len(_CONTROL_BODY), _CONTROL_BODY))
    while True:
        c, _ = s.accept()
        with c:
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = c.recv(4096)
                if not chunk:
                    break
                buf += chunk
            c.sendall(reply)


def _probe_main(port, path, pause):
    """The Prober's process: sample until stdin closes, then print JSON."""
    import json
    import subprocess
    import sys
    control = subprocess.Popen([sys.executable, os.path.abspath(__file__), "control"],
                               stdout=subprocess.PIPE)
    control_port = int(control.stdout.readline())
    halt = threading.Event()
    out = {"agent": [], "control": [], "hiccups": []}

    def sampler(key, p):
        while not halt.is_set():
            t0 = time.monotonic()
            try:
                st, _, secs = http_get(p, path, timeout=2)
            except Exception as e:  # noqa: BLE001 - recorded as a failure
                st, secs = repr(e), time.monotonic() - t0
            out[key].append((t0, secs, st))
            time.sleep(pause)

    def hiccup_meter():
        while not halt.is_set():
            t0 = time.monotonic()
            time.sleep(0.005)
            late = time.monotonic() - t0 - 0.005
            if late > Prober.STALL:
                out["hiccups"].append((t0, late + 0.005))

    threads = [threading.Thread(target=sampler, args=("agent", port), daemon=True),
               threading.Thread(target=sampler, args=("control", control_port), daemon=True),
               threading.Thread(target=hiccup_meter, daemon=True)]
    for t in threads:
        t.start()
    print("started", flush=True)
    try:
        sys.stdin.buffer.read()
    finally:
        halt.set()
        for t in threads:
            t.join(5)
        control.kill()
        control.wait()
    sys.stdout.write(json.dumps(out))


# --------------------------------------------------------------------------
# TCP proxy
# --------------------------------------------------------------------------

_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104


class _ProxyConn:
    def __init__(self):
        self.query_seen = False   # the client has sent a Query message
        self.passed = 0           # server bytes forwarded since the stall began
        self.epoch = -1
        self.cbuf = b""           # unparsed client bytes
        self.startup_done = False


class FaultProxy:
    """127.0.0.1:port -> upstream, one asyncio loop in a daemon thread.

    stall(budget): on every connection that has sent a Query, forward at
    most `budget` more server->client bytes (a partial result), then hold
    the rest; the startup and authentication of new connections pass.
    unstall() releases what was held and forwards normally again.
    hold_new(True) parks new clients before the upstream connect;
    hold_new(False) lets them through.
    """

    def __init__(self, upstream_port, upstream_host="127.0.0.1"):
        self.upstream = (upstream_host, upstream_port)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server = None
        self.port = None
        self.stalled = False
        self.budget = 0
        self.epoch = 0
        self.accepted = 0
        self.open = 0
        self._flowing = None
        self._admit = None
        self._tasks = set()

    # -- control, from any thread -------------------------------------
    def _call(self, fn):
        async def run():
            return fn()
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def start(self):
        self.thread.start()

        async def setup():
            self._flowing = asyncio.Event()
            self._flowing.set()
            self._admit = asyncio.Event()
            self._admit.set()
            self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
            self.port = self.server.sockets[0].getsockname()[1]
        asyncio.run_coroutine_threadsafe(setup(), self.loop).result(10)
        return self

    def stall(self, budget=16):
        def go():
            self.budget = budget
            self.epoch += 1
            self.stalled = True
            self._flowing.clear()
        self._call(go)

    def unstall(self):
        def go():
            self.stalled = False
            self._flowing.set()
        self._call(go)

    def hold_new(self, on):
        self._call(self._admit.clear if on else self._admit.set)

    def stop(self):
        if not self.thread.is_alive():
            return

        async def shutdown():
            self.server.close()
            for t in list(self._tasks):
                t.cancel()
            await asyncio.sleep(0)
        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)

    cleanup = stop

    # -- the proxy itself ----------------------------------------------
    async def _client(self, creader, cwriter):
        task = asyncio.current_task()
        self._tasks.add(task)
        self.accepted += 1
        self.open += 1
        swriter = None
        try:
            await self._admit.wait()
            sreader, swriter = await asyncio.open_connection(*self.upstream)
            conn = _ProxyConn()
            up = asyncio.ensure_future(self._client_to_server(conn, creader, swriter))
            down = asyncio.ensure_future(self._server_to_client(conn, sreader, cwriter))
            await asyncio.wait([up, down], return_when=asyncio.FIRST_COMPLETED)
            for t in (up, down):
                t.cancel()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for w in (cwriter, swriter):
                if w is not None:
                    w.close()
            self.open -= 1
            self._tasks.discard(task)

    def _parse_client(self, conn, data):
        """Notice the first Query ('Q') message the client sends."""
        conn.cbuf += data
        while True:
            if not conn.startup_done:
                if len(conn.cbuf) < 8:
                    return
                (n,) = struct.unpack(">I", conn.cbuf[:4])
                (code,) = struct.unpack(">I", conn.cbuf[4:8])
                if len(conn.cbuf) < n:
                    return
                conn.cbuf = conn.cbuf[n:]
                if code not in (_SSL_REQUEST, _GSSENC_REQUEST):
                    conn.startup_done = True
            else:
                if len(conn.cbuf) < 5:
                    return
                kind = conn.cbuf[0:1]
                (n,) = struct.unpack(">I", conn.cbuf[1:5])
                if kind == b"Q":
                    conn.query_seen = True
                if len(conn.cbuf) < 1 + n:
                    return
                conn.cbuf = conn.cbuf[1 + n:]

    async def _client_to_server(self, conn, reader, writer):
        while True:
            data = await reader.read(65536)
            if not data:
                return
            if not conn.query_seen:
                self._parse_client(conn, data)
            writer.write(data)
            await writer.drain()

    async def _server_to_client(self, conn, reader, writer):
        while True:
            data = await reader.read(65536)
            if not data:
                return
            if self.stalled and conn.query_seen:
                if conn.epoch != self.epoch:
                    conn.epoch = self.epoch
                    conn.passed = 0
                n = max(0, self.budget - conn.passed)
                head, held = data[:n], data[n:]
                conn.passed += len(head)
                if head:
                    writer.write(head)
                    await writer.drain()
                if held:
                    await self._flowing.wait()
                    data = held
                else:
                    continue
            writer.write(data)
            await writer.drain()


# --------------------------------------------------------------------------
# DNS
# --------------------------------------------------------------------------

class FakeDns:
    """A UDP DNS server on 127.0.0.1:port. For `name` it answers
    mode 'ok': A = address (AAAA: no data), 'nxdomain': NXDOMAIN,
    'silent': nothing at all. Any other name: NXDOMAIN. Questions are
    echoed byte for byte (evdns randomizes the case of names)."""

    def __init__(self, name, address="127.0.0.1"):
        self.name = name.lower().rstrip(".")
        self.address = address
        self.mode = "ok"
        self.queries = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.halt.set()
        self.thread.join(5)
        self.sock.close()

    cleanup = stop

    @staticmethod
    def _question(pkt):
        pos = 12
        labels = []
        while True:
            n = pkt[pos]
            pos += 1
            if n == 0:
                break
            labels.append(pkt[pos:pos + n].decode("ascii", "replace"))
            pos += n
        qtype, _ = struct.unpack(">HH", pkt[pos:pos + 4])
        return ".".join(labels).lower(), qtype, pkt[12:pos + 4]

    def _answer(self, pkt):
        qid, flags = struct.unpack(">HH", pkt[:4])
        name, qtype, question = self._question(pkt)
        rd = flags & 0x0100
        if name != self.name or self.mode == "nxdomain":
            return struct.pack(">HHHHHH", qid, 0x8080 | rd | 3, 1, 0, 0, 0) + question
        if self.mode == "silent":
            return None
        answers = b""
        count = 0
        if qtype == 1:  # A
            answers = (b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 0, 4)
                       + socket.inet_aton(self.address))
            count = 1
        return struct.pack(">HHHHHH", qid, 0x8080 | rd, 1, count, 0, 0) + question + answers

    def _run(self):
        while not self.halt.is_set():
            try:
                pkt, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            self.queries += 1
            try:
                out = self._answer(pkt)
            except (IndexError, struct.error, UnicodeDecodeError):
                continue
            if out is not None:
                self.sock.sendto(out, peer)


# --------------------------------------------------------------------------
# An agent started through a command prefix
# --------------------------------------------------------------------------

class WrappedAgent(Agent):
    """harness.Agent whose binary is started as `PREFIX... binary ARGS`,
    through a small exec-only shell script, so the agent keeps the PID
    the harness knows (every prefix command must exec its argument)."""

    def __init__(self, registry, config, prefix, **kw):
        super().__init__(registry, config, **kw)
        self.real_binary = harness.agent_binary()
        self.wrapper = os.path.join(self.base, "agent-wrapper.sh")
        with open(self.wrapper, "w") as f:
            f.write("#!/bin/sh\nexec " + " ".join(shlex.quote(p) for p in prefix)
                    + " " + shlex.quote(self.real_binary) + ' "$@"\n')
        os.chmod(self.wrapper, 0o755)

    def start(self, wait=True, timeout=10):
        saved = os.environ.get("PGBDR_AGENT")
        os.environ["PGBDR_AGENT"] = self.wrapper
        try:
            return super().start(wait=wait, timeout=timeout)
        finally:
            if saved is None:
                os.environ.pop("PGBDR_AGENT", None)
            else:
                os.environ["PGBDR_AGENT"] = saved


def resolv_conf_prefix(registry, dns_port):
    """A prefix running the agent in a private mount namespace whose
    /etc/resolv.conf names only 127.0.0.1:dns_port (libevent's evdns
    accepts a port on a nameserver line)."""
    d = registry.mkdtemp("resolv")
    path = os.path.join(d, "resolv.conf")
    with open(path, "w") as f:
        f.write(f"nameserver 127.0.0.1:{dns_port}\noptions timeout:1 attempts:1\n")
    os.chmod(path, 0o644)
    script = 'mount --bind "$0" /etc/resolv.conf && exec "$@"'
    return ["unshare", "-m", "--", "/bin/sh", "-c", script, path]


def can_unshare_mounts():
    import subprocess
    r = subprocess.run(["unshare", "-m", "--", "/bin/sh", "-c",
                        "mount --bind /dev/null /etc/hostname"],
                       capture_output=True, timeout=10)
    return r.returncode == 0


# --------------------------------------------------------------------------
# PostgreSQL faults the harness does not have
# --------------------------------------------------------------------------

def kill_postmaster_only(pg, timeout=15):
    """SIGKILL the postmaster alone, as a crash of it would: its children
    notice and exit by themselves (those left after `timeout` are
    killed). Then the stale pid file and socket lock are removed so that
    pg.start() works."""
    import signal
    pid = pg.postmaster_pid()
    assert pid, f"{pg.name} is not running"
    kids = harness.process_tree(pid)
    harness.signal_quiet(pid, signal.SIGKILL)
    everyone = [pid] + kids

    def dead():
        harness.reap(everyone)
        return not any(harness.pid_alive(p) for p in everyone)
    try:
        wait_for(dead, timeout, 0.02, desc=f"{pg.name} children to exit after the postmaster")
    except AssertionError:
        for p in everyone:
            harness.signal_quiet(p, signal.SIGKILL)
        wait_for(dead, 10, desc=f"{pg.name} processes to die")
    for f in [os.path.join(pg.datadir, "postmaster.pid"),
              os.path.join(pg.sockdir, f".s.PGSQL.{pg.port}.lock")]:
        try:
            os.unlink(f)
        except FileNotFoundError:
            pass


def write_hba(pg, monitor_method):
    """pg_hba.conf as the harness writes it, except the TCP line for the
    monitoring role, which uses monitor_method ('reject', 'scram-sha-256')."""
    with open(os.path.join(pg.datadir, "pg_hba.conf"), "w") as f:
        f.write("local   all          all                    trust\n"
                "local   replication  all                    trust\n"
                f"host    all          {harness.MONITOR_ROLE}   127.0.0.1/32     {monitor_method}\n"
                "host    all          all   127.0.0.1/32     scram-sha-256\n"
                "host    replication  all   127.0.0.1/32     scram-sha-256\n")


if __name__ == "__main__":
    import sys
    if len(sys.argv) == 5 and sys.argv[1] == "probe":
        _probe_main(int(sys.argv[2]), sys.argv[3], float(sys.argv[4]))
    elif sys.argv[1:] == ["control"]:
        _control_main()
    else:
        sys.exit(f"usage: {sys.argv[0]} probe PORT PATH PAUSE | control")
