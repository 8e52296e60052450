"""
Abusive clients for test_client_abuse.py, run in a child process so that
the test process, which measures the well-behaved clients' latency, has
its own CPU time and GIL. One selector loop, non-blocking sockets.

    python3 abuse_clients.py '{"mode": "slowloris", "port": 9200, "count": 500, ...}'

prints "ready" once `count` connections are established, abuses until
its stdin closes, then closes everything and prints one JSON report:
{"opened": N, "max_open": N, "closed": [[opened_at, closed_at,
last_progress_at (our last byte sent), detail, last_input_at (floods:
the last time unread input grew, i.e. the agent's last write)], ...],
"still_open": [opened_at, ...], "still_open_io": [[opened_at,
last_io (the later of our last byte sent and the last growth of
unread input), unsent (bytes we had sent that the agent had not read
yet)], ...],
"stopped_at": t, "sent": bytes, "errors": [...]}, with times from
CLOCK_MONOTONIC (comparable with the test's). "closed" lists only the
connections the agent closed; "still_open" those it had not closed.

Modes ("reopen": true replaces each connection the agent closes):
  idle        connect, then nothing
  slowloris   an unfinished HTTP request, then one header byte every
              "period" seconds
  spop-idle   per connection, in turn: HELLO then silence; HELLO and a
              partial NOTIFY; a partial HELLO (everything the agent
              sends is read)
  spop-flood  HELLO, then NOTIFY frames as fast as possible, never
              reading the ACKs
  http-flood  keep-alive GET requests as fast as possible, never
              reading the replies ("path": what to GET, default
              /node/NODE)
  spop-frag   HELLO, then a fragmented NOTIFY of "frag_bytes" (default
              1000000) whose last fragment never comes (everything the
              agent sends is read)

The parent side is AbuseClients.
"""

import errno
import fcntl
import json
import os
import resource
import select
import socket
import subprocess
import struct
import sys
import termios
import time

HERE = os.path.dirname(os.path.abspath(__file__))


# --------------------------------------------------------------------------
# parent side
# --------------------------------------------------------------------------

class AbuseClients:
    """Runs this file as a child process; registry-managed."""

    def __init__(self, registry, mode, port, count, **opts):
        self.config = dict(opts, mode=mode, port=port, count=count)
        self.proc = None
        self.report = None
        registry.add(self)

    def start(self, timeout=60):
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__),
                                      json.dumps(self.config)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while True:
            r, _, _ = select.select([self.proc.stdout], [], [], max(0, deadline - time.monotonic()))
            if not r:
                self.cleanup()
                raise AssertionError(f"abusers ({self.config['mode']}) not ready in {timeout}s")
            line = self.proc.stdout.readline()
            if line.strip() == b"ready":
                self.started_at = time.monotonic()
                return self
            if not line:
                err = self.proc.stderr.read().decode(errors="replace")
                raise AssertionError(f"abusers ({self.config['mode']}) died: {err[-2000:]}")

    def stop(self, timeout=60):
        out, err = self.proc.communicate(b"", timeout=timeout)
        if self.proc.returncode != 0:
            raise AssertionError(f"abusers exited {self.proc.returncode}: "
                                 f"{err.decode(errors='replace')[-2000:]}")
        self.report = json.loads(out)
        self.stopped_at = time.monotonic()
        return self.report

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


# --------------------------------------------------------------------------
# SPOP bytes (spop_client is importable from the same directory)
# --------------------------------------------------------------------------

def _spop():
    sys.path.insert(0, HERE)
    import spop_client as sp
    return sp


# --------------------------------------------------------------------------
# child side
# --------------------------------------------------------------------------

def unsent_bytes(sock):
    """Bytes in our send queue the agent has not read (SIOCOUTQ), -1 if unknown."""
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ,
                                              b"\0\0\0\0"))[0]
    except OSError:
        return -1


class Conn:
    __slots__ = ("sock", "index", "opened", "connected", "last_progress", "out", "next_at",
                 "inbuf", "detail", "hello_done", "variant", "inq", "last_in")

    def __init__(self, sock, index):
        self.sock = sock
        self.index = index
        self.opened = time.monotonic()
        self.connected = False
        self.last_progress = self.opened
        self.out = b""
        self.next_at = 0.0
        self.inbuf = b""
        self.detail = ""
        self.hello_done = False
        self.variant = 0
        self.inq = 0              # bytes waiting unread (floods)
        self.last_in = self.opened


class Abuser:
    def __init__(self, cfg):
        self.cfg = cfg
        self.mode = cfg["mode"]
        self.port = cfg["port"]
        self.count = cfg["count"]
        self.reopen = cfg.get("reopen", False)
        self.period = cfg.get("period", 0.5)
        self.node = cfg.get("node", "x")
        self.poll = select.poll()
        self.conns = {}           # fd -> Conn
        self.pending = 0
        self.opened = 0
        self.max_open = 0
        self.closed = []
        self.errors = []
        self.sent = 0
        self.next_index = 0
        self.polled_at = time.monotonic()
        self.stopping = False
        self.sp = _spop() if self.mode.startswith("spop") else None
        if self.sp:
            self.hello = self.sp.hello(capabilities="pipelining")
            self.notify_block = b"".join(
                self.sp.notify(1, i + 1, [self.sp.status_message(self.node)]) for i in range(64))
        if self.mode == "spop-frag":
            payload = self.sp.messages_payload(
                [("pgbdr-status", [("node", "f" * cfg.get("frag_bytes", 1000000))])])
            cuts = list(range(16000, len(payload), 16000))
            self.frag_block = b"".join(self.sp.fragments(1, 1, payload, cuts)[:-1])
        path = cfg.get("path", f"/node/{self.node}")
        self.get_block = (f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n" * 64).encode()

    # -- connections -------------------------------------------------
    def open_one(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        rc = s.connect_ex(("127.0.0.1", self.port))
        if rc not in (0, errno.EINPROGRESS):
            s.close()
            self.errors.append(f"connect: {os.strerror(rc)}")
            return
        c = Conn(s, self.next_index)
        self.next_index += 1
        c.variant = c.index % 3
        self.conns[s.fileno()] = c
        self.pending += 1
        self.poll.register(s.fileno(), select.POLLOUT | select.POLLRDHUP)

    def on_connected(self, c):
        c.connected = True
        self.pending -= 1
        self.opened += 1
        now = time.monotonic()
        c.opened = now
        c.last_progress = now
        mode = self.mode
        if mode == "slowloris":
            c.out = f"GET /node/{self.node} HTTP/1.1\r\nHost: x\r\nX-Slow: ".encode()
            c.next_at = now + self.period
        elif mode == "spop-idle":
            if c.variant == 2:
                c.out = self.hello[:10]            # a partial HELLO
            else:
                c.out = self.hello
        elif mode in ("spop-flood", "spop-frag"):
            c.out = self.hello
        elif mode == "http-flood":
            c.out = self.get_block
        self.max_open = max(self.max_open, len(self.conns) - self.pending)
        self.update_events(c)

    def update_events(self, c):
        ev = select.POLLRDHUP
        if self.stopping:                              # closes only
            if self.mode not in ("spop-flood", "http-flood"):
                ev |= select.POLLIN
        elif not c.connected:
            ev |= select.POLLOUT
        elif self.mode == "http-flood":
            ev |= select.POLLOUT                       # never reads
        elif self.mode == "spop-flood":
            ev |= select.POLLOUT if (c.out or c.hello_done) else 0
            ev |= 0 if c.hello_done else select.POLLIN  # reads the AGENT-HELLO only
        else:
            ev |= select.POLLIN | (select.POLLOUT if c.out else 0)
        self.poll.modify(c.sock.fileno(), ev)

    def drop(self, c, detail, by_peer=True):
        fd = c.sock.fileno()
        try:
            self.poll.unregister(fd)
        except (KeyError, ValueError):
            pass
        del self.conns[fd]
        if not c.connected:
            self.pending -= 1
        c.sock.close()
        if by_peer and c.connected:
            # when poll() reported it, not when we got round to it
            self.closed.append([c.opened, self.polled_at, c.last_progress, detail or c.detail,
                                c.last_in])
        if by_peer and self.reopen:
            self.open_one()

    # -- I/O -----------------------------------------------------------
    def write(self, c):
        if self.mode == "spop-flood" and c.hello_done and not c.out:
            c.out = self.notify_block
        elif self.mode == "http-flood" and not c.out:
            c.out = self.get_block
        if not c.out:
            self.update_events(c)
            return
        try:
            n = c.sock.send(c.out)
        except BlockingIOError:
            return
        except OSError as e:
            self.drop(c, f"send: {e.strerror}")
            return
        self.sent += n
        c.out = c.out[n:]
        c.last_progress = time.monotonic()
        self.update_events(c)

    def read(self, c):
        try:
            data = c.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as e:
            self.drop(c, f"recv: {e.strerror}")
            return
        if not data:
            self.drop(c, c.detail or "eof")
            return
        c.inbuf += data
        if self.sp:
            self.parse_spop(c)
        elif self.mode in ("idle", "slowloris"):
            c.detail = "got " + repr(c.inbuf[:40])

    def parse_spop(self, c):
        sp = self.sp
        while len(c.inbuf) >= 4:
            n = int.from_bytes(c.inbuf[:4], "big")
            if len(c.inbuf) < 4 + n:
                return
            f = sp.parse_frame(c.inbuf[:4 + n])
            c.inbuf = c.inbuf[4 + n:]
            if f.type == sp.AGENT_HELLO and not c.hello_done:
                c.hello_done = True
                if self.mode == "spop-idle" and c.variant == 1:
                    frame = sp.notify(1, 1, [sp.status_message(self.node)])
                    c.out = frame[:7]              # a partial NOTIFY
                elif self.mode == "spop-frag":
                    c.out = self.frag_block
                self.update_events(c)
            elif f.type == sp.AGENT_DISCONNECT:
                try:
                    c.detail = f"disconnect {f.kv().get('status-code')}"
                except Exception:  # noqa: BLE001
                    c.detail = "disconnect ?"

    def tick(self, now):
        if self.mode in ("spop-flood", "http-flood"):
            # The agent's writes still progress while unread bytes pile up here.
            for c in self.conns.values():
                if c.connected:
                    try:
                        n = struct.unpack("i", fcntl.ioctl(c.sock.fileno(), termios.FIONREAD,
                                                           b"\0\0\0\0"))[0]
                    except OSError:
                        continue
                    if n > c.inq:
                        c.last_in = now
                    c.inq = n
            return
        if self.mode != "slowloris":
            return
        for c in list(self.conns.values()):
            if c.connected and now >= c.next_at and not c.out:
                c.out = b"a"
                c.next_at = now + self.period
                self.update_events(c)

    # -- main loop -----------------------------------------------------
    def run(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        ready_said = False
        stopping = 0.0
        stdin_fd = sys.stdin.fileno()
        self.poll.register(stdin_fd, select.POLLIN)
        while True:
            # keep at most 256 connects in flight: the listen backlog is small
            while self.next_index < self.count and self.pending < 256:
                self.open_one()
            if not ready_said and self.opened >= self.count and self.pending == 0:
                print("ready", flush=True)
                ready_said = True
            if not ready_said and self.next_index >= self.count and self.pending == 0:
                print("ready", flush=True)   # some connects failed: see errors
                ready_said = True
            timeout = 200 if self.mode in ("idle", "spop-idle") else 50
            if stopping:
                timeout = 0
            events = self.poll.poll(timeout)
            self.polled_at = time.monotonic()
            if stopping and (not events or self.polled_at > stopping):
                return self.finish()
            for fd, ev in events:
                if fd == stdin_fd:
                    if not os.read(stdin_fd, 4096):
                        # stop abusing; note the closes already reported, then finish
                        stopping = self.polled_at + 2.0
                        self.stopping = True
                        self.reopen = False
                        self.poll.unregister(stdin_fd)
                        for other in self.conns.values():
                            if other.connected:
                                self.update_events(other)
                    continue
                c = self.conns.get(fd)
                if c is None:
                    continue
                if not c.connected:
                    err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        self.errors.append(f"connect: {os.strerror(err)}")
                        self.drop(c, "", by_peer=False)
                        continue
                    if ev & (select.POLLOUT | select.POLLIN | select.POLLRDHUP | select.POLLHUP):
                        self.on_connected(c)
                    continue
                if ev & select.POLLIN:
                    self.read(c)
                    if self.conns.get(fd) is not c:   # dropped (its fd may be reused)
                        continue
                elif ev & (select.POLLRDHUP | select.POLLHUP | select.POLLERR):
                    # not reading (floods): a FIN or a reset ends it
                    self.drop(c, "hangup" if ev & select.POLLRDHUP else "reset/error")
                    continue
                if ev & select.POLLOUT:
                    self.write(c)
            if not stopping:
                self.tick(time.monotonic())

    def finish(self):
        still_open = [c.opened for c in self.conns.values() if c.connected]
        still_open_io = [[c.opened, max(c.last_progress, c.last_in), unsent_bytes(c.sock)]
                         for c in self.conns.values() if c.connected]
        for c in list(self.conns.values()):
            self.drop(c, "", by_peer=False)
        report = {"opened": self.opened, "max_open": self.max_open, "closed": self.closed,
                  "still_open": still_open, "still_open_io": still_open_io,
                  "stopped_at": time.monotonic(),
                  "sent": self.sent, "errors": self.errors[:50], "n_errors": len(self.errors)}
        sys.stdout.write(json.dumps(report))
        sys.stdout.flush()


if __name__ == "__main__":
    Abuser(json.loads(sys.argv[1])).run()
