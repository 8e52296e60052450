"""The HTTP responder: methods, status codes, framing, keep-alive, and
robustness against bad clients (garbage, huge headers, unfinished
requests, connection floods) without leaking descriptors."""

import json
import random
import re
import socket
import struct
import time

import pytest

from harness import (CAPTURED, FAST_AGENT, Agent, free_port, node_section,
                     read_until_close, recv_reply, wait_for)


CLIENT_TIMEOUT = 1.0  # [agent] client_timeout


@pytest.fixture(scope="module")
def agent(module_registry, plain_pg, module_password):
    dead_port = free_port()  # nothing listens there
    a = Agent(module_registry, [
        ("agent", dict(FAST_AGENT, client_timeout=f"{int(CLIENT_TIMEOUT * 1000)}ms")),
        ("node.n1", node_section(plain_pg, module_password)),
        ("node.dead", {"dsn": f"host=127.0.0.1 port={dead_port} dbname=app user=pgbdr_monitor "
                              f"password={module_password}", "flavor": "plain"}),
    ], name="agent-http").start()
    a.wait_state("n1", "ready", 10)
    a.wait_state("dead", "down", 10)
    return a


def parse_raw(data, head_request=False):
    """Parse one reply from raw bytes; return (reply, trailing bytes)."""
    class Buf:
        def __init__(self, b):
            self.b = b

        def recv(self, n):
            out, self.b = self.b[:n], self.b[n:]
            return out
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep, f"no end of headers in {data!r}"
    m = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
    assert m, f"no Content-Length in {head!r}"
    n = 0 if head_request else int(m.group(1))
    reply = recv_reply(Buf(head + sep + rest[:n]), head_request=head_request)
    return reply, rest[n:]


def test_get_default_node(agent):
    r = agent.get("/")
    assert r.status == 200, r
    assert r.headers["content-length"] == str(len(r.body))
    assert r.headers.get("content-type", "").startswith("text/plain"), r.headers
    text = r.text
    assert text.count("\n") <= 1 and text.strip(), text  # one line
    assert "ready" in text and "n1" in text, text
    assert re.search(r"\b100\b", text), f"weight missing: {text}"


def test_node_paths(agent):
    r = agent.get("/node/n1")
    assert r.status == 200 and "ready" in r.text and "n1" in r.text, r
    r = agent.get("/node/dead")
    assert r.status == 503, r
    assert "down" in r.text and "dead" in r.text, r
    assert agent.get("/node/nosuch").status == 404
    assert agent.get("/nosuch").status == 404
    assert agent.get("/node/").status == 404


def test_status_json(agent, module_password):
    st = agent.status_json()
    assert isinstance(st["version"], str) and st["version"]
    assert st["default_node"] == "n1"
    nodes = {n["name"]: n for n in st["nodes"]}
    assert set(nodes) == {"n1", "dead"}
    n1 = nodes["n1"]
    for key in ("name", "flavor", "state", "weight", "lag_bytes", "lag_seconds", "read_only",
                "reason", "write_leader", "maintenance", "checked_at", "check_ms", "host",
                "port", "dbname", "user"):
        assert key in n1, key
    assert n1["flavor"] == "plain" and n1["state"] == "ready" and n1["weight"] == 100
    assert n1["read_only"] is False and n1["maintenance"] is False
    # plain: replicates from nowhere, so nothing to wait for: 0, known
    assert n1["lag_bytes"] == 0 and n1["lag_seconds"] == 0
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", n1["checked_at"]), n1["checked_at"]
    assert isinstance(n1["check_ms"], (int, float)) and 0 <= n1["check_ms"] < 1000
    assert n1["dbname"] == "app" and n1["user"] == "pgbdr_monitor"
    assert str(n1["port"]) == str(agent_pg_port(agent))
    dead = nodes["dead"]
    assert dead["state"] == "down" and dead["weight"] == 0 and dead["reason"]
    assert dead["checked_at"] is None  # never probed successfully
    raw = json.dumps(st)
    assert "password" not in raw.lower() and module_password not in raw


def agent_pg_port(agent):
    m = re.search(r"node\.n1\]\ndsn = .*port=(\d+)", agent.config_text)
    return int(m.group(1))


def test_live(agent):
    r = agent.get("/live")
    assert r.status == 200, r


@pytest.mark.parametrize("path", ["/", "/node/n1", "/node/dead", "/live", "/status"])
def test_head_has_no_body_and_correct_length(agent, path):
    # GET, HEAD, GET: compared only when the two GETs agree, so that a
    # probe round that changed the node in between is not taken for a
    # wrong Content-Length
    for _ in range(20):
        g = agent.get(path)
        h = agent.get(path, method="HEAD")
        if path == "/status" or agent.get(path).body == g.body:
            break
    assert h.status == g.status
    assert h.body == b""  # recv_reply also fails on any byte beyond the headers
    if path != "/status":  # /status carries timestamps; its length may move
        assert h.headers["content-length"] == str(len(g.body)), (h.headers, len(g.body))
    else:
        assert abs(int(h.headers["content-length"]) - len(g.body)) < 64


@pytest.mark.parametrize("path", ["/", "/node/n1", "/live", "/status"])
def test_options(agent, path):
    r = agent.get(path, method="OPTIONS")
    assert r.status == 200, r
    assert r.headers["content-length"] == str(len(r.body))


def test_options_on_down_node_is_503(agent):
    assert agent.get("/node/dead", method="OPTIONS").status == 503


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "TRACE"])
def test_unsupported_methods(agent, method):
    r = agent.get("/", method=method, headers={"Content-Length": "0"})
    assert r.status == 405, r
    assert r.headers["content-length"] == str(len(r.body))


def test_haproxy_default_probe_http10(agent):
    """`option httpchk` with no arguments: OPTIONS / HTTP/1.0, no headers.
    One reply, then the agent closes."""
    data = agent.request_raw(b"OPTIONS / HTTP/1.0\r\n\r\n", timeout=3)
    assert re.match(rb"^HTTP/1\.[01] 200 ", data), data
    reply, rest = parse_raw(data)
    assert rest == b"", f"bytes after the body: {rest!r}"
    assert reply.headers["content-length"] == str(len(reply.body))
    assert b"ready" in reply.body


def test_haproxy_http_check_send_style(agent):
    """`http-check send meth GET uri /node/n1 ver HTTP/1.1 hdr host x`:
    lower-case headers and connection: close."""
    data = agent.request_raw(b"GET /node/n1 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    reply, rest = parse_raw(data)
    assert reply.status == 200 and rest == b""


def test_http10_closes_after_reply(agent):
    with agent.connect() as s:
        s.sendall(b"GET /live HTTP/1.0\r\nHost: x\r\n\r\n")
        data = read_until_close(s, 3)
    reply, rest = parse_raw(data)
    assert reply.status == 200 and rest == b""


def test_http11_keep_alive(agent):
    with agent.connect(timeout=3) as s:
        for path, want in [("/", 200), ("/node/dead", 503), ("/nosuch", 404), ("/status", 200),
                           ("/node/n1", 200)]:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            r = recv_reply(s, deadline=time.monotonic() + 3)
            assert r.status == want, (path, r)
            assert r.headers.get("connection", "").lower() != "close", r.headers
        s.sendall(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        r = recv_reply(s, head_request=True, deadline=time.monotonic() + 3)
        assert r.status == 200
        # Last one asks to close: the agent answers, then closes.
        s.sendall(b"GET /live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = read_until_close(s, 3)
    reply, rest = parse_raw(data)
    assert reply.status == 200 and rest == b""


def test_http11_pipelined(agent):
    with agent.connect(timeout=3) as s:
        s.sendall(b"GET /node/n1 HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /node/dead HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = read_until_close(s, 3)
    statuses = []
    while data:
        r, data = parse_raw(data)
        statuses.append(r.status)
    assert statuses == [200, 503, 200]


def test_keep_alive_after_request_with_body(agent):
    """A body sent with a refused or plain request is consumed, not
    parsed as the next request."""
    with agent.connect(timeout=3) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                  b"GET /node/n1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
                  b"GET /live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = read_until_close(s, 3)
    statuses = []
    while data:
        r, data = parse_raw(data)
        statuses.append(r.status)
    assert statuses == [405, 200, 200]


def test_http10_keep_alive_when_asked(agent):
    with agent.connect(timeout=3) as s:
        for _ in range(3):
            s.sendall(b"GET /node/n1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            r = recv_reply(s, deadline=time.monotonic() + 3)
            assert r.status == 200
        s.sendall(b"GET /live HTTP/1.0\r\n\r\n")
        data = read_until_close(s, 3)
    assert parse_raw(data)[0].status == 200


def test_unknown_method_token(agent):
    data = agent.request_raw(b"FOO / HTTP/1.0\r\n\r\n", timeout=3)
    reply, rest = parse_raw(data)
    assert reply.status in (405, 501), reply
    assert agent.get("/live").status == 200


def test_lag_parameter_on_plain_node(agent):
    # A plain node has no replication to lag behind: unknown lag passes.
    assert agent.get("/?lag=16MB").status == 200
    assert agent.get("/node/n1?lag=0").status == 200
    assert agent.get("/node/dead?lag=16MB").status == 503


def test_bad_lag_parameter_is_400(agent):
    assert agent.get("/?lag=abc").status == 400
    assert agent.get("/node/n1?lag=-5").status == 400


def test_query_string_does_not_change_path(agent):
    assert agent.get("/live?x=1").status == 200
    assert agent.get("/nosuch?lag=1MB").status == 404


@pytest.mark.parametrize("raw", [
    b"HELLO\r\n\r\n",
    b"GET\r\n\r\n",
    b"GET / HTTP/1.1 extra\r\n\r\n",
    b"GET / FOO/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nno-colon-header\r\n\r\n",
    b"\x00\x01\x02 / HTTP/1.1\r\n\r\n",
], ids=["word", "no-uri", "extra-token", "bad-proto", "bad-header", "binary-method"])
def test_malformed_is_400(agent, raw):
    data = agent.request_raw(raw, timeout=3)
    reply, rest = parse_raw(data)
    assert reply.status == 400, reply
    assert agent.get("/live").status == 200


def exchange(agent, data, shut_wr=False, timeout=CLIENT_TIMEOUT + 2.0):
    """Send data, optionally half-close, and return what comes back until
    the agent closes. An unfinished request must be closed by the agent
    at the latest after client_timeout (AssertionError otherwise)."""
    with agent.connect(timeout=3) as s:
        try:
            s.sendall(data)
            if shut_wr:
                s.shutdown(socket.SHUT_WR)
        except OSError:  # the agent may already have reset it
            pass
        try:
            out = read_until_close(s, timeout)
        except ConnectionResetError:
            out = b""
    CAPTURED.text("raw reply", out)
    return out


@pytest.mark.parametrize("shut_wr", [True, False], ids=["eof", "held"])
@pytest.mark.parametrize("size", [1, 100, 4096, 65536])
def test_garbage_bytes(agent, size, shut_wr):
    rnd = random.Random(size)
    blob = bytes(rnd.randrange(256) for _ in range(size))
    t0 = time.monotonic()
    data = exchange(agent, blob, shut_wr=shut_wr)
    if data:
        assert re.match(rb"^HTTP/1\.[01] 4\d\d ", data), data[:200]
        reply, rest = parse_raw(data)
    assert time.monotonic() - t0 < CLIENT_TIMEOUT + 2.0
    assert agent.get("/live").status == 200


def test_tls_client_hello(agent):
    # A TLS ClientHello (someone pointed `check-ssl` at the agent).
    hello = bytes.fromhex("16030100a5010000a10303") + bytes(32) + b"\x00\x00\x02\x13\x01\x01\x00"
    data = exchange(agent, hello)
    if data:
        assert re.match(rb"^HTTP/1\.[01] 400 ", data), data[:200]
    assert agent.get("/live").status == 200


def test_huge_header(agent):
    req = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (100 * 1024) + b"\r\n\r\n"
    data = exchange(agent, req)
    if data:
        assert re.match(rb"^HTTP/1\.[01] (400|413|431) ", data), data[:200]
    assert agent.get("/live").status == 200
    assert agent.get("/").status == 200


def test_many_headers(agent):
    req = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-H%d: %d\r\n" % (i, i) for i in range(5000)) + b"\r\n"
    data = exchange(agent, req)
    if data:
        assert re.match(rb"^HTTP/1\.[01] (400|413|431) ", data), data[:200]
    assert agent.get("/live").status == 200


def test_unfinished_request_is_closed_after_client_timeout(agent):
    t0 = time.monotonic()
    data = exchange(agent, b"GET / HTTP/1.1\r\nHost: x\r\n")
    elapsed = time.monotonic() - t0
    assert elapsed >= CLIENT_TIMEOUT * 0.8, elapsed
    if data:
        assert re.match(rb"^HTTP/1\.[01] 408 ", data), data[:200]


def test_huge_request_line(agent):
    req = b"GET /" + b"x" * (100 * 1024) + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    data = exchange(agent, req)
    if data:
        assert re.match(rb"^HTTP/1\.[01] (400|404|414|431) ", data), data[:200]
    assert agent.get("/live").status == 200


def test_unfinished_requests_do_not_block_others(agent):
    held = []
    try:
        for i in range(50):
            s = agent.connect(timeout=3)
            # Half a request line, half the headers, or nothing at all.
            s.sendall([b"GET / HT", b"GET / HTTP/1.1\r\nHost: x\r\n", b""][i % 3])
            held.append(s)
        for _ in range(20):
            t0 = time.monotonic()
            r = agent.get("/node/n1", timeout=2)
            assert r.status == 200
            assert time.monotonic() - t0 < 0.2
    finally:
        for s in held:
            s.close()
    assert agent.get("/live").status == 200


def test_unfinished_request_can_complete_later(agent):
    with agent.connect(timeout=3) as s:
        s.sendall(b"GET /node/n1 HT")
        # Meanwhile, others get answers.
        assert agent.get("/live").status == 200
        s.sendall(b"TP/1.0\r\n\r\n")
        data = read_until_close(s, 3)
    reply, rest = parse_raw(data)
    assert reply.status == 200


def _settled_fd_count(agent):
    """fd count once it stops moving (probe reconnects, closing clients)."""
    last = [None]

    def stable():
        now = agent.fd_count()
        ok = now == last[0]
        last[0] = now
        return ok
    wait_for(stable, 10, interval=0.3, desc="stable fd count")
    return last[0]


def test_connection_flood_leaks_nothing(agent):
    before = _settled_fd_count(agent)
    rnd = random.Random(7)
    opened = 0
    while opened < 1000:
        batch = []
        for _ in range(200):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(3)
            s.connect(("127.0.0.1", agent.port))
            kind = rnd.randrange(4)
            try:
                if kind == 1:
                    s.sendall(b"GET / HTTP/1.1\r\nHost:")  # unfinished
                elif kind == 2:
                    s.sendall(b"GET /live HTTP/1.1\r\nHost: x\r\n\r\n")  # never read
                elif kind == 3:
                    # RST instead of FIN
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            batch.append(s)
            opened += 1
        for s in batch:
            s.close()
        assert agent.get("/live", timeout=3).status == 200
    assert agent.proc.poll() is None, agent.log()[-2000:]
    assert agent.get("/").status == 200
    wait_for(lambda: agent.fd_count() <= before, 15, interval=0.2,
             desc=f"agent fd count back to {before} (now {agent.fd_count()})")
    # And it keeps working.
    for _ in range(5):
        assert agent.get("/node/n1").status == 200
