"""Helpers for the agent-check and write-leader tests: a raw agent-check
client, clients bound to a chosen source address, HAProxy server waits
on any predicate, and a `show stat` sampler. Built on harness.py, which
is left as it is."""

import os
import re
import socket
import threading
import time

from harness import CAPTURED, recv_reply, wait_for

MB = 1024 * 1024


def connect(port, source=None, timeout=3.0, host="127.0.0.1"):
    """TCP connection to host:port, from `source` (an address on lo, e.g.
    127.0.0.2) when given: the bind happens before connect."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    if source:
        s.bind((source, 0))
    s.connect((host, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_all(sock, timeout):
    """Everything the peer sends until it closes (a reset counts as a
    close). AssertionError if it neither closes nor resets in time."""
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return data
            data += chunk
    except ConnectionResetError:
        return data
    except socket.timeout:
        raise AssertionError(f"peer did not close within {timeout}s (got {data!r})") from None


def agent_check(port, send=None, source=None, timeout=3.0, chunks=None, pause=0.05):
    """One agent-check exchange as HAProxy does it: connect, write the
    agent-send string (if any), read until the agent closes. `chunks`
    sends several pieces `pause` seconds apart instead. Returns (reply
    bytes, seconds from connect to close)."""
    t0 = time.monotonic()
    with connect(port, source=source, timeout=timeout) as s:
        if chunks:
            for i, c in enumerate(chunks):
                if i:
                    time.sleep(pause)
                s.sendall(c)
        elif send is not None:
            s.sendall(send)
        data = read_all(s, timeout)
    elapsed = time.monotonic() - t0
    CAPTURED.text(f"agent-check {send or chunks!r}", data)
    return data, elapsed


def http_get_from(port, path, source, timeout=3.0):
    """GET path over a connection bound to `source` -> HttpReply."""
    req = (f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").encode()
    with connect(port, source=source, timeout=timeout) as s:
        s.sendall(req)
        reply = recv_reply(s, deadline=time.monotonic() + timeout)
    CAPTURED.text(f"http GET {path} from {source}", reply.raw_head + b"\r\n\r\n" + reply.body)
    return reply


# --------------------------------------------------------------------------
# HAProxy
# --------------------------------------------------------------------------

def accepting(row):
    """Whether HAProxy sends new sessions to this server: its status is
    UP (possibly "UP 1/2", going down), or "no check" (UP, with no
    health check of its own). DOWN, DRAIN, MAINT, NOLB do not."""
    status = row["status"]
    return status.split(" ")[0] == "UP" or status == "no check"


def servers(haproxy, backend):
    """{svname: row} of the backend's servers (no FRONTEND/BACKEND rows)."""
    return {r["svname"]: r for r in haproxy.show_stat()
            if r["pxname"] == backend and r["svname"] not in ("FRONTEND", "BACKEND")}


def wait_server(haproxy, backend, server, predicate, timeout, desc):
    """Wait until predicate(row) for backend/server; returns the row. On
    timeout the error shows the row and the tail of HAProxy's log."""
    def check():
        row = haproxy.server(backend, server)
        return row if predicate(row) else False
    try:
        return wait_for(check, timeout, desc=f"haproxy {backend}/{server}: {desc}")
    except AssertionError as e:
        raise AssertionError(f"{e}\nnow: {_brief(haproxy.server(backend, server))}\n"
                             f"--- haproxy log ---\n{haproxy.log()[-3000:]}") from None


def _brief(row):
    keys = ("svname", "status", "weight", "check_status", "agent_status", "last_agt", "last_chk")
    return {k: row.get(k) for k in keys}


class PhasedSampler:
    """Calls sample() every `period` seconds in a thread, labelling what it
    records with the current phase; mark(phase) labels what follows.
    Subclasses append to self.samples; errors go to self.errors."""

    def __init__(self, period=0.1):
        self.period = period
        self.samples = []
        self.errors = []
        self.phase = "start"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.t0 = time.monotonic()
        self._thread.start()
        return self

    def mark(self, phase):
        self.phase = phase

    def elapsed(self):
        return round(time.monotonic() - self.t0, 3)

    def wait_in_phase(self, count, timeout):
        """Returns once `count` samples carry the current phase: a phase
        that a test asserts on is not left before it has been sampled
        (a sample started before mark() carries the phase before)."""
        phase, end = self.phase, time.monotonic() + timeout
        while sum(1 for s in self.samples if s[1] == phase) < count:
            if time.monotonic() > end:
                raise AssertionError(f"under {count} samples in phase {phase!r} after {timeout}s")
            time.sleep(0.02)

    def sample(self):
        raise NotImplementedError

    def _run(self):
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                self.sample()
            except Exception as e:  # noqa: BLE001 - reported by the test
                self.errors.append(repr(e))
            next_at += self.period
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def stop(self):
        self._stop.set()
        self._thread.join(5)


class StatSampler(PhasedSampler):
    """Samples `show stat` for one backend every `period` seconds in a
    thread. Each sample: (t, phase, {svname: status}), t in seconds since
    start(). Call mark(phase) to label the samples that follow."""

    def __init__(self, haproxy, backend, period=0.1):
        super().__init__(period)
        self.haproxy = haproxy
        self.backend = backend

    def sample(self):
        phase = self.phase
        rows = servers(self.haproxy, self.backend)
        self.samples.append((self.elapsed(), phase, {k: v["status"] for k, v in rows.items()}))

    @staticmethod
    def up_servers(statuses):
        return sorted(k for k, st in statuses.items() if accepting({"status": st}))

    def log_text(self):
        return "\n".join(f"{t:7.3f} {phase:<22} UP={','.join(self.up_servers(st)) or '-':<12} "
                         + " ".join(f"{k}={v}" for k, v in sorted(st.items()))
                         for t, phase, st in self.samples)

    def zero_gaps(self):
        """[(start t, end t, phase at start)] of every run of samples
        with no server UP; end is the first sample with one UP again (or
        the last sample)."""
        gaps = []
        start = None
        for t, phase, st in self.samples:
            if not self.up_servers(st):
                if start is None:
                    start = (t, phase)
            elif start is not None:
                gaps.append((start[0], t, start[1]))
                start = None
        if start is not None:
            gaps.append((start[0], self.samples[-1][0], start[1]))
        return gaps


# HAProxy -db logs each server state change on stderr, e.g.
#   [WARNING]  (123) : Server pg_write/node1 is DOWN, reason: ...
#   [WARNING]  (123) : Server pg_write/node1 is UP/READY (leaving forced maintenance).
_EVENT = re.compile(r"^\[\w+\]\s+\(\d+\) : Server (\S+)/(\S+) is (UP|DOWN|going DOWN)\b(/READY)?")


def haproxy_events(log_text, backend):
    """Ordered (server, 'UP'|'DOWN') transitions of the backend from
    HAProxy's log, in the order HAProxy applied them."""
    out = []
    for line in log_text.splitlines():
        m = _EVENT.match(line)
        if m and m.group(1) == backend:
            out.append((m.group(2), "DOWN" if "DOWN" in m.group(3) else "UP"))
    return out


def max_concurrent_up(events, initially_up=()):
    """Replays HAProxy's logged transitions; returns (most servers UP at
    once, the event index where that happened)."""
    up = set(initially_up)
    most, where = len(up), -1
    for i, (server, state) in enumerate(events):
        if state == "UP":
            up.add(server)
        else:
            up.discard(server)
        if len(up) > most:
            most, where = len(up), i
    return most, where


def touch(path):
    with open(path, "a"):
        pass
    os.utime(path)
