"""A fake pgbdr-agent for the HAProxy Lua tests: it answers every HTTP
request on a kept-alive connection with whatever the test set, good or
hostile, so that the Lua script's parser can be fed output the real
agent never writes (truncated, garbage, huge, contradictory).

    fake = FakeAgent(); fake.start()
    fake.serve(compact_doc(seq=1, write="node2", nodes=[...]))
    fake.serve_raw(b"HTTP/1.1 200 OK\\r\\nContent-Length: 99\\r\\n\\r\\nshort", close=True)
    fake.stop()
"""

import socket
import threading

from harness import free_port


def compact_doc(seq, nodes, write=None, best=None, staleness_ms=10, replica=None):
    """A /compact body. nodes: list of (name, state, weight[, lag])."""
    lines = ["pgbdr-compact 1", f"seq {seq}", f"staleness_ms {staleness_ms}",
             f"write_node {write or '-'}", f"best_node {best or '-'}"]
    if replica is not None:
        lines.append(f"best_replica {replica}")
    lines.append(f"ready_nodes {sum(1 for n in nodes if n[1] in ('ready', 'degraded'))}")
    for n in nodes:
        name, state, weight = n[:3]
        lag = n[3] if len(n) > 3 else 0
        lines.append(f"node {name} {state} {weight} {1 if name == write else 0} "
                     f"{'-' if lag is None else lag}")
    lines.append(f"end {len(nodes)}")
    return ("\n".join(lines) + "\n").encode()


def http_reply(body, extra_headers=b""):
    return (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n" + extra_headers + b"\r\n" + body)


class FakeAgent:
    def __init__(self, port=None):
        self.port = port or free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self._reply = http_reply(b"")
        self._close = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock = None
        self._threads = []
        self.requests = 0

    def serve(self, body):
        """Answer with a well-formed HTTP reply carrying body."""
        self.serve_raw(http_reply(body))

    def serve_raw(self, data, close=False):
        """Answer with these exact bytes; close the connection after
        them when close is true."""
        with self._lock:
            self._reply = data
            self._close = close

    def start(self):
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", self.port))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve_conn, args=(conn,), daemon=True)
            t.start()

    def _serve_conn(self, conn):
        conn.settimeout(0.5)
        buf = b""
        try:
            while not self._stop.is_set():
                while b"\r\n\r\n" not in buf:
                    try:
                        chunk = conn.recv(4096)
                    except socket.timeout:
                        if self._stop.is_set():
                            return
                        continue
                    if not chunk:
                        return
                    buf += chunk
                _, buf = buf.split(b"\r\n\r\n", 1)
                with self._lock:
                    data, close = self._reply, self._close
                    self.requests += 1
                conn.settimeout(5)
                conn.sendall(data)
                conn.settimeout(0.5)
                if close:
                    return
        except OSError:
            return
        finally:
            conn.close()

    def stop(self):
        self._stop.set()
        if self._sock:
            self._sock.close()
            self._sock = None

    def cleanup(self):
        self.stop()
