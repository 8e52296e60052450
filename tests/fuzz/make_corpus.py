#!/usr/bin/env python3
"""
Writes the seed corpora of the fuzz harnesses under tests/fuzz/corpus/.

    python3 tests/fuzz/make_corpus.py

The SPOP frames are encoded with tests/integration/spop_client.py, the
tests' own encoder written from HAProxy's doc/SPOE.txt (it shares no
code with spoe/spop.c), as HAProxy 2.6 sends them (design.md 4). The
output is deterministic: re-running it changes nothing.
"""

import os
import shutil
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import fake_pg  # noqa: E402
import spop_client as sp  # noqa: E402

CORPUS = os.path.join(HERE, "corpus")


def write(harness, name, data):
    d = os.path.join(CORPUS, harness)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------------------
# fuzz_spop: one option byte, then the frames
#   bits 0-1 reassembly cap (0, 64, 1024, 65536), bits 2-3 max-frame-size
#   (256, 1024, 16380, 65535), bits 4-5 re-cut pieces - 1
# ---------------------------------------------------------------------------

def opt(cap=3, size=2, pieces=2):
    return bytes([cap | size << 2 | (pieces - 1) << 4])


HELLO_26 = sp.hello(versions="2.0", max_frame_size=16380, capabilities="pipelining,async",
                    engine_id="a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d")
HELLO_FRAG = sp.hello(capabilities="pipelining,async,fragmentation")
HELLO_CHECK = sp.hello(capabilities="", healthcheck=True, engine_id=None)
HELLO_31 = sp.hello(capabilities="pipelining", engine_id="0123456789abcdef")
DISCONNECT = sp.disconnect(0, "normal")
DISCONNECT_TIMEOUT = sp.disconnect(2, "a timeout occurred")

ALL_TYPES = [
    ("node", "n1"),
    ("", sp.Typed(sp.T_INT32, -5)),
    ("u32", sp.Typed(sp.T_UINT32, 4000000000)),
    ("i64", -1),                     # HAProxy's INT64: ten bytes when negative
    ("u64", sp.Typed(sp.T_UINT64, (1 << 64) - 1)),
    ("src", sp.Typed(sp.T_IPV4, bytes([10, 0, 0, 1]))),
    ("src6", sp.Typed(sp.T_IPV6, bytes(range(16)))),
    ("bin", b"\x00\xff\x01"),
    ("null", None),
    ("t", True),
    ("f", False),
]


def spop_seeds():
    status = sp.status_message()
    status_n2 = sp.status_message("n2")
    big = sp.messages_payload([("pgbdr-status", ALL_TYPES), ("other-message", [("x", 1)]),
                               status_n2])
    seeds = {
        "hello-2.6": opt() + HELLO_26,
        "hello-healthcheck": opt() + HELLO_CHECK,
        "hello-3.1": opt(cap=0) + HELLO_31,
        "hello-fragmentation": opt() + HELLO_FRAG,
        "session-2.6": opt() + HELLO_26
        + sp.notify(1, 1, [status]) + sp.notify(2, 1, [status_n2])
        + sp.notify(3, 7, [("pgbdr-status", [("node", sp.Typed(sp.T_BINARY, b"n1"))])])
        + sp.notify(4, 1, [("pgbdr-status", [("node", None)])]) + DISCONNECT,
        "session-3.1-odd-streams": opt(cap=0) + HELLO_31
        + sp.notify(1, 1, [status]) + sp.notify(3, 2, [status_n2]) + sp.notify(5, 3, []),
        "notify-all-types": opt(size=3) + HELLO_26 + sp.frame(sp.NOTIFY, big, 9, 300),
        "notify-unknown-message": opt() + HELLO_26 + sp.notify(1, 1, [("x-check", [])]),
        "notify-small-frame": opt(size=0) + HELLO_26 + sp.frame(sp.NOTIFY, big, 1, 1),
        "pipelined-20": opt() + HELLO_26 + b"".join(
            sp.notify(i % 4 + 1, 1000 + i, [status]) for i in range(20)),
        "disconnect-normal": opt() + DISCONNECT,
        "disconnect-timeout": opt() + HELLO_26 + DISCONNECT_TIMEOUT,
        "fragmented-mid-value": opt(cap=3) + HELLO_FRAG
        + b"".join(sp.fragments(5, 6, big, [3, 17, len(big) - 2])),
        "fragmented-small-cap": opt(cap=1) + HELLO_FRAG
        + b"".join(sp.fragments(5, 6, big, [40])),
        "fragmented-not-announced": opt(cap=0) + HELLO_26
        + b"".join(sp.fragments(1, 1, big, [10])),
        "fragmented-abort": opt(cap=2) + HELLO_FRAG + sp.fragments(7, 8, big, [10, 20])[0]
        + sp.frame(sp.UNSET, b"", 7, 8, sp.ABORT) + sp.notify(7, 9, [status]),
        "fragmented-interlaced": opt(cap=2) + HELLO_FRAG + sp.fragments(7, 8, big, [10])[0]
        + sp.notify(8, 1, [status]),
        "fragmented-wrong-ids": opt(cap=2) + HELLO_FRAG + sp.fragments(7, 8, big, [10])[0]
        + sp.frame(sp.UNSET, big[10:], 7, 9, sp.FIN),
        "unset-without-start": opt(cap=2) + HELLO_FRAG + sp.frame(sp.UNSET, b"\x00", 1, 1),
        "bad-version": opt() + sp.hello(versions="1.0"),
        "versions-list": opt() + sp.hello(versions=" 1.0 , 2.5,3.0"),
        "no-max-frame-size": opt() + sp.hello(omit=("max-frame-size",)),
        "max-frame-size-small": opt() + sp.hello(max_frame_size=100),
        "max-frame-size-int64": opt() + sp.frame(sp.HAPROXY_HELLO, sp.kv_list([
            ("supported-versions", "2.0"), ("max-frame-size", 65536),
            ("capabilities", "")])),
        "no-capabilities": opt() + sp.hello(omit=("capabilities",)),
        "hello-not-fin": opt() + sp.frame(sp.HAPROXY_HELLO, sp.hello_payload(), flags=0),
        "hello-nonzero-ids": opt() + sp.frame(sp.HAPROXY_HELLO, sp.hello_payload(), 1, 0),
        "notify-before-hello": opt() + sp.notify(1, 1, [status]),
        "second-hello": opt() + HELLO_26 + HELLO_26,
        "unknown-type": opt() + HELLO_26 + sp.frame(42, b"xyz", 1, 1),
        "agent-frame-from-haproxy": opt() + HELLO_26 + sp.frame(sp.ACK, b"", 1, 1),
        "too-big": opt(size=0) + struct.pack(">I", 300) + b"\x01" + bytes(299),
        "too-short": opt() + struct.pack(">I", 3) + b"\x01\x00\x00",
        "truncated": opt() + HELLO_26[:-5],
        "truncated-notify-args": opt() + HELLO_26
        + sp.frame(sp.NOTIFY, sp.string("pgbdr-status") + b"\x02" + sp.string("node")
                   + b"\x08\x05n", 1, 1),
        "reserved-type": opt() + HELLO_26
        + sp.frame(sp.NOTIFY, sp.string("m") + b"\x01" + sp.string("a") + b"\x0c", 1, 1),
        "varint-overflow": opt() + HELLO_26
        + sp.frame(sp.NOTIFY, b"", 1, 1)[:9] + b"\xff" * 10 + b"\x01",
        "varint-16380": opt() + bytes.fromhex("fcf006") + HELLO_26,
    }
    for name, data in seeds.items():
        write("fuzz_spop", name, data)


# ---------------------------------------------------------------------------
# fuzz_agentcheck: node table header, then the request line
# ---------------------------------------------------------------------------

READY, DEGRADED, DRAINING, DOWN = 1, 2, 3, 0


def node(state, weight, name=b"", reason=b"", flags=0):
    if name:
        flags |= 1
    return bytes([state, weight, flags, len(name)]) + name + bytes([len(reason)]) + reason


def table(nodes, default=0, leader=0):
    return bytes([len(nodes) - 1, default, leader]) + b"".join(nodes)


def agentcheck_seeds():
    one = table([node(READY, 100)])
    three = table([node(READY, 100), node(DEGRADED, 37, reason=b"replication lag 40MB > 16MB"),
                   node(DOWN, 0, reason=b"connection refused\nis the server running?")],
                  leader=0)
    drained = table([node(DRAINING, 100), node(READY, 100)], leader=1)
    catalog = table([node(READY, 80, name=b"bdr-node-a", flags=2), node(DOWN, 0, name=b"b")],
                    leader=4)
    seeds = {
        "single-empty": one,
        "single-node1": one + b"node1",
        "node1": three + b"node1",
        "node2-write": three + b"node2 write",
        "node1-write": three + b"node1 write",
        "node3-down": three + b"node3",
        "default-empty": three,
        "upper-write": three + b"NODE2 WRITE\r",
        "comma-tab": three + b"node1,\twrite",
        "unknown-node": three + b"node9",
        "extra-word": three + b"node1 write now",
        "long-line": three + b"x" * 300,
        "long-name": three + b"n" * 70 + b" write",
        "drain": drained + b"node1",
        "drain-write": drained + b"node1 write",
        "catalog-name": catalog + b"bdr-node-a",
        "no-leader": catalog + b"bdr-node-a write",
    }
    for name, data in seeds.items():
        write("fuzz_agentcheck", name, data)


# ---------------------------------------------------------------------------
# fuzz_config: config files, good and bad, and value lists
# ---------------------------------------------------------------------------

CLASSIC = "[postgresql]\nhost=localhost\ndatabase=suppliers\nuser=postgres\npassword=postgres\n"

FULL = """# every key
[agent]
http_listen = 127.0.0.1:9300
agent_listen = *:9301
spoe_listen = [::1]:9302
allow_from = 10.0.0.0/8, 192.168.0.0/16 ::1
interval = 500ms
timeout = 1.5s
stale_after = 10s
rise = 3
fall = 2
maintenance_file = /etc/pgbdr-agent/maintenance
log_level = debug
log_destination = syslog
user = pgbdr
allow_root = yes
agent_send_wait = 250ms
leader_return_delay = 1min
leader_handover = 3s
spoe_max_frame_size = 16kB
spoe_max_fragmented = 4MB
max_clients = 500
client_timeout = 30s

[policy]
drain_lag = 16MB
max_lag = 64MB
max_lag_time = 1.5min
min_weight = 5
read_only = ready

[node.node2]
dsn = host=10.0.0.2 port=5433 dbname=app user=mon
priority = 200
flavor = pgd
sslmode = require

[postgresql]
host = /var/run/postgresql
dbname = app
name = local-1
priority = 10
flavor = bdr
connect_timeout = 3
"""


def config_seeds():
    seeds = {
        "classic-database.ini": CLASSIC,
        "classic-indented-crlf.ini": "\ufeff    [postgresql]\r\n    host=localhost\r\n"
        "    database=suppliers\r\n    user=postgres\r\n    password=postgres\r\n",
        "full.ini": FULL,
        "uri-nodes.ini": "[node.a]\ndsn = postgresql://mon@10.0.0.3:5432/app?sslmode=require\n"
        "[node.b]\ndsn = host=h1,h2 port=5432,5433 dbname=app target_session_attrs=read-write\n"
        "flavor = physical\n",
        "bad-unknown-key.ini": CLASSIC + "colour = blue\n",
        "bad-duplicate-key.ini": CLASSIC + "host = other\n",
        "bad-section.ini": "[nodes.x]\nhost=a\n",
        "bad-node-name.ini": "[node.bad name!]\nhost=a\n",
        "bad-header.ini": "[postgresql\nhost=a\n",
        "bad-no-node.ini": "[agent]\ninterval = 1s\n",
        "bad-stale-after.ini": "[agent]\ninterval = 2s\nstale_after = 1s\n" + CLASSIC,
        "bad-drain-lag.ini": "[policy]\ndrain_lag = 64MB\n" + CLASSIC,
        "bad-dsn.ini": "[node.x]\ndsn = host='unterminated\n",
        "bad-port.ini": "[node.x]\nhost = a\nport = 5432,99999\n",
        "bad-values.ini": "[agent]\nhttp_listen = ::1:9200\ninterval = -1s\nrise = many\n"
        "allow_from = 10.0.0.0/33\n" + CLASSIC,
        "bad-long-line.ini": "[node.x]\ndsn = host=a " + "x" * 250 + "\n",
        "bad-name-clash.ini": "[postgresql]\nhost=a\nname=n1\n[node.n1]\nhost=b\n",
        "values.txt": "16MB\n1.5GB\n512B\n64 kB\n1TiB\n8388607TB\n500ms\n2min\n1.5h\n1d\n"
        "yes\nOff\n42\n-1000\n9223372036854775807\n0.0.0.0:9200\n[::1]:9201\n*:9200\n"
        ":9200\n9200\noff\nlocalhost:65535\n10.0.0.0/8, 192.168.1.1 ::1/128\n"
        "fe80::/10\t::ffff:10.0.0.1/128\n0.0.0.0/0\n",
    }
    for name, text in seeds.items():
        write("fuzz_config", name, text)
    with open(os.path.join(ROOT, "haproxy-examples", "pgbdr-agent.ini"), "rb") as f:
        write("fuzz_config", "haproxy-examples-pgbdr-agent.ini", f.read())


# ---------------------------------------------------------------------------
# fuzz_http: raw requests
# ---------------------------------------------------------------------------

def http_seeds():
    seeds = {
        "haproxy-options": b"OPTIONS / HTTP/1.0\r\n\r\n",
        "get-node-lag": b"GET /node/n1?lag=16MB HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        "haproxy-write-check": b"GET /write HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        "head": b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n",
        "head-1.0": b"HEAD /node/n2 HTTP/1.0\r\n\r\n",
        "status": b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "metrics": b"GET /metrics HTTP/1.0\r\n\r\n",
        "live": b"GET /live HTTP/1.1\r\nHost: x\r\n\r\n",
        "read": b"GET /read?x=1&lag=1.5GB HTTP/1.1\r\nHost: x\r\n\r\n",
        "node-read-write": b"GET /node/n2/read HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /node/n2/write HTTP/1.1\r\nHost: x\r\n\r\n",
        "keepalive-pipeline": b"GET / HTTP/1.1\r\nHost: x\r\n\r\nHEAD /node/n1 HTTP/1.1\r\n"
        b"Host: x\r\n\r\nGET /node/n3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "post-body": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        "delete": b"DELETE /status HTTP/1.1\r\nHost: x\r\n\r\n",
        "chunked": b"PUT /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n",
        "expect-continue": b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        b"Content-Length: 3\r\n\r\nabc",
        "unknown-path": b"GET /nosuch HTTP/1.1\r\nHost: x\r\n\r\n",
        "unknown-node": b"GET /node/nope HTTP/1.1\r\nHost: x\r\n\r\n",
        "bad-lag": b"GET /?lag=abc HTTP/1.1\r\nHost: x\r\n\r\n",
        "absolute-uri": b"GET http://x/node/n1 HTTP/1.1\r\nHost: x\r\n\r\n",
        "encoded-path": b"GET /node/%6e1?lag=%31MB HTTP/1.1\r\nHost: x\r\n\r\n",
        "bad-word": b"HELLO\r\n\r\n",
        "bad-no-uri": b"GET\r\n\r\n",
        "bad-proto": b"GET / FOO/1.1\r\n\r\n",
        "bad-header": b"GET / HTTP/1.1\r\nno-colon-header\r\n\r\n",
        "bad-head-header": b"HEAD / HTTP/1.1\r\nno-colon-header\r\n\r\n",
        "binary-method": b"\x00\x01\x02 / HTTP/1.1\r\n\r\n",
        "http-0.9": b"GET /\r\n",
        # evhttp answered these "HTTP/-1.1 200 OK" and "HTTP/1.10 200 OK"
        "version-negative": b"GET /live HTTP/-1.1\r\nHost: x\r\n\r\n",
        "version-1.10": b"GET /live HTTP/1.10\r\n\r\n",
        "options-star": b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
        "keepalive-1.0": b"GET /live HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
        b"GET /node/n2 HTTP/1.0\r\n\r\n",
        "bare-lf": b"GET /node/n1 HTTP/1.1\nHost: x\n\n",
        "unfinished": b"GET / HTTP/1.1\r\nHost: x\r\n",
        "version-505": b"GET /live HTTP/1.1\r\nHost: x\r\n\r\nGET /live HTTP/2.0\r\n\r\n",
        "no-host": b"GET /live HTTP/1.1\r\n\r\n",
        "conflicting-length": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
                              b"Content-Length: 2\r\n\r\nab",
        "bare-cr": b"GET / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n",
        "tls-client-hello": bytes.fromhex("16030100a5010000a10303") + bytes(32)
        + b"\x00\x00\x02\x13\x01\x01\x00",
    }
    for name, data in seeds.items():
        write("fuzz_http", name, data)


# ---------------------------------------------------------------------------
# fuzz_probe: PostgreSQL v3 backend messages, as the fake server answers
# in each of its modes (a bounded sample of the endless ones), and the
# answers of a healthy node to the plain probe
# ---------------------------------------------------------------------------

def probe_seeds():
    for mode in fake_pg.MODES:
        write("fuzz_probe", f"fake-pg-{mode}", fake_pg.replies(mode, "S3cret-fuzz"))
    plain = (fake_pg.row_description(["in_recovery", "read_only"], 16)
             + fake_pg.data_row([b"f", b"f"]) + fake_pg.msg(b"C", fake_pg.cstr("SELECT 1")))
    write("fuzz_probe", "plain-probe", plain)
    write("fuzz_probe", "null-values",
          fake_pg.row_description(["a", "b"]) + b"D\0\0\0\x0e\0\x02\xff\xff\xff\xff\0\0\0\0"
          + fake_pg.msg(b"C", fake_pg.cstr("SELECT 1")))


def main():
    for h in ("fuzz_spop", "fuzz_agentcheck", "fuzz_config", "fuzz_http", "fuzz_probe"):
        shutil.rmtree(os.path.join(CORPUS, h), ignore_errors=True)
    spop_seeds()
    agentcheck_seeds()
    config_seeds()
    http_seeds()
    probe_seeds()


if __name__ == "__main__":
    main()
