"""SPOP (spoe_listen) protocol tests against a running agent, with the
independent client in spop_client.py: HELLO negotiation and every
refusal code, frame limits, garbage, pipelining, fragmentation,
timeouts, max_clients and a client that never reads. A witness
connection opened at the start must keep working after every test."""

import os
import random
import select
import socket
import struct
import time

import pytest

import spop_client as sp
from harness import FAST_AGENT, Agent, free_port, node_section, wait_for

OUR_MAX_FRAME = 16380
MAX_FRAGMENTED = 64 * 1024
SERVING = ("ready", "degraded")


def dead_dsn():
    """A node nobody listens for: always down, connection refused."""
    return f"host=127.0.0.1 port={free_port()} dbname=app user=pgbdr_monitor connect_timeout=1"


@pytest.fixture(scope="module")
def agent(module_registry, plain_pg, module_password):
    spoe_port = free_port()
    a = Agent(module_registry, [
        ("agent", dict(FAST_AGENT, spoe_listen=f"127.0.0.1:{spoe_port}", client_timeout="30s",
                       spoe_max_fragmented="64kB", leader_handover="0s")),
        ("node.alpha", node_section(plain_pg, module_password, priority=100)),
        ("node.beta", {"dsn": dead_dsn(), "flavor": "plain", "priority": 200}),
    ], name="agent-spop")
    a.spoe_port = spoe_port
    a.start()
    a.wait_state("alpha", "ready", 15)
    a.wait_state("beta", "down", 15)
    wait_for(lambda: a.node("alpha")["write_leader"], 15, desc="alpha becomes write leader")
    return a


@pytest.fixture(scope="module")
def witness(agent):
    """A connection that lives through the whole module."""
    c = sp.SpopClient(agent.spoe_port).connect()
    c.hello()
    c.next_id = 1
    yield c
    c.close()


@pytest.fixture(autouse=True)
def agent_keeps_serving(request, agent, witness):
    yield
    assert agent.proc.poll() is None, f"agent died:\n{agent.log()[-3000:]}"
    witness.next_id += 1
    ack = witness.query(1, witness.next_id, [sp.status_message("alpha")])
    assert sp.ack_vars(ack) == expected_vars(agent, "alpha")


def client(agent):
    return sp.SpopClient(agent.spoe_port).connect()


def ready_client(agent, **hello):
    c = client(agent)
    c.hello(**hello)
    return c


def best_node(nodes):
    serving = [n for n in nodes if n["state"] in SERVING]
    serving.sort(key=lambda n: (n["lag_bytes"] is None, n["lag_bytes"] or 0, n["name"]))
    return serving[0]["name"] if serving else ""


def expected_vars(agent, name=None, status=None):
    """The variables an ACK must set for node `name` (None: the default
    node), from /status."""
    st = status or agent.status_json()
    nodes = st["nodes"]
    cluster = {
        "write_node": next((n["name"] for n in nodes if n["write_leader"]), ""),
        "best_node": best_node(nodes),
        "ready_nodes": sum(n["state"] in SERVING for n in nodes),
    }
    if name is None:
        name = st["default_node"]
    node = next((n for n in nodes if n["name"] == name), None)
    if node is None:
        return dict(cluster, ready=False, weight=0, state="unknown", node="",
                    reason=f"unknown node {name}")
    serving = node["state"] in SERVING
    out = dict(cluster, ready=serving, weight=node["weight"] if serving else 0, node=name,
               state=node["state"], reason=node["reason"] or "")
    if node["lag_bytes"] is not None:
        out["lag_bytes"] = node["lag_bytes"]
    return out


def metrics(agent):
    out = {}
    for line in agent.get("/metrics").text.splitlines():
        if line.startswith("pgbdr_spop_"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


# --------------------------------------------------------------------------
# HELLO
# --------------------------------------------------------------------------

@pytest.mark.parametrize("theirs,expected", [(16380, 16380), (65536, OUR_MAX_FRAME), (1000, 1000),
                                             (256, 256)])
def test_hello_negotiates_the_smaller_frame_size(agent, theirs, expected):
    with client(agent) as c:
        f = c.hello(max_frame_size=theirs)
        kv = f.kv()
        assert f.flags == sp.FIN and f.stream_id == 0 and f.frame_id == 0
        assert kv["version"] == "2.0"
        assert kv["max-frame-size"] == expected
        caps = [x.strip() for x in kv["capabilities"].split(",")]
        assert "pipelining" in caps and "fragmentation" in caps, kv


@pytest.mark.parametrize("hello", [
    dict(capabilities=""),                          # spop-check style
    dict(omit=("capabilities",)),
    dict(versions="1.0, 2.0"),
    dict(versions=" 2.0 ,1.5"),
    dict(capabilities="pipelining,async,fragmentation,something-new"),
])
def test_hello_variants_accepted(agent, hello):
    with ready_client(agent, **hello) as c:
        ack = c.query(5, 9, [sp.status_message()])
        assert sp.ack_vars(ack) == expected_vars(agent)


@pytest.mark.parametrize("hello,status", [
    (dict(omit=("supported-versions",)), 5),
    (dict(versions="1.0"), 8),
    (dict(versions="3.0, 1.0"), 8),
    (dict(omit=("max-frame-size",)), 6),
    (dict(max_frame_size=100), 9),
    (dict(max_frame_size=255), 9),
], ids=["no-version", "v1.0", "v3.0-1.0", "no-max-frame-size", "mfs-100", "mfs-255"])
def test_bad_hello_is_refused(agent, hello, status):
    with client(agent) as c:
        c.send(sp.hello(**hello))
        c.expect_disconnect(status)


def test_healthcheck_hello_gets_agent_hello_then_close(agent):
    with client(agent) as c:
        # What option spop-check sends: no engine-id, empty capabilities.
        f = c.hello(capabilities="", engine_id=None, healthcheck=True)
        assert f.kv()["version"] == "2.0"
        c.expect_closed()


def test_haproxy_disconnect_gets_disconnect_0(agent):
    with ready_client(agent) as c:
        c.send(sp.disconnect(0, "normal"))
        c.expect_disconnect(0)
    with client(agent) as c:
        c.send(sp.disconnect(2, "a timeout occurred"))
        c.expect_disconnect(0)


# --------------------------------------------------------------------------
# Frames that are wrong
# --------------------------------------------------------------------------

def test_frame_over_max_frame_size_before_hello(agent):
    with client(agent) as c:
        # Only the length prefix: the agent must refuse without waiting for the body.
        c.send(struct.pack(">I", OUR_MAX_FRAME + 1) + b"\x01\x00\x00\x00\x01\x00\x00")
        c.expect_disconnect(3)


def test_frame_over_negotiated_size(agent):
    with ready_client(agent, max_frame_size=1000) as c:
        blob = "x" * 1000
        c.send(sp.notify(1, 1, [("pgbdr-other", [("blob", blob)])]))
        c.expect_disconnect(3)


def test_frame_of_exactly_negotiated_size_is_fine(agent):
    with ready_client(agent, max_frame_size=1000) as c:
        head = len(sp.notify(1, 1, [("pgbdr-other", [("blob", "")])])) - 4
        body = "y" * (1000 - head - 1)   # one more byte for the longer string length
        frame = sp.notify(1, 1, [("pgbdr-other", [("blob", body)])])
        assert len(frame) - 4 == 1000, len(frame)
        c.send(frame)
        ack = c.read_frame()
        assert ack.type == sp.ACK and ack.payload == b""


@pytest.mark.parametrize("garbage,status", [
    (b"\x00\x00\x00\x03abc", 4),                  # LEN below the smallest frame
    (b"\x00\x00\x00\x00", 4),
    (b"GET / HTTP/1.0\r\n\r\n", 3),               # "GET " as LEN: 1.2 GB
    (b"\xff\xff\xff\xff" + b"z" * 20, 3),
    (struct.pack(">I", 7) + b"\x01\x00\x00\x00\x01\xff\xff", 4),   # truncated stream-id varint
    (sp.frame(sp.HAPROXY_HELLO, b"\x05hello\x0f"), 4),              # reserved type 15
    (sp.frame(sp.HAPROXY_HELLO, b"\x50abc"), 4),                    # key longer than payload
    (sp.frame(sp.HAPROXY_HELLO, sp.hello_payload(), stream_id=3), 4),  # HELLO with ids
], ids=["len3", "len0", "http", "len-max", "bad-varint", "reserved-type", "long-key",
        "hello-ids"])
def test_garbage(agent, garbage, status):
    with client(agent) as c:
        c.send(garbage)
        c.expect_disconnect(status)


def test_hello_without_fin(agent):
    with client(agent) as c:
        c.send(sp.frame(sp.HAPROXY_HELLO, sp.hello_payload(), flags=0))
        c.expect_disconnect(10)


def test_notify_before_hello(agent):
    with client(agent) as c:
        c.send(sp.notify(1, 1, [sp.status_message()]))
        c.expect_disconnect(4)


@pytest.mark.parametrize("ftype", [42, 4, sp.ACK, sp.AGENT_HELLO, 255])
def test_unknown_frame_type_after_hello(agent, ftype):
    with ready_client(agent) as c:
        c.send(sp.frame(ftype, b"", 1, 1))
        c.expect_disconnect(4)


def test_unknown_frame_type_before_hello(agent):
    with client(agent) as c:
        c.send(sp.frame(42, b"", 0, 0))
        c.expect_disconnect(4)


def test_second_hello_is_invalid(agent):
    with ready_client(agent) as c:
        c.send(sp.hello())
        c.expect_disconnect(4)


def test_malformed_notify_payload(agent):
    with ready_client(agent) as c:
        # a message announcing 2 args but carrying one
        payload = sp.string("pgbdr-status") + b"\x02" + sp.string("node") + sp.typed("alpha")
        c.send(sp.frame(sp.NOTIFY, payload, 1, 1))
        c.expect_disconnect(4)


def test_truncated_frame_then_close_leaves_agent_serving(agent):
    for cut in (1, 3, 4, 10, len(sp.hello()) - 1):
        s = socket.create_connection(("127.0.0.1", agent.spoe_port), timeout=5)
        s.sendall(sp.hello()[:cut])
        s.close()
    with ready_client(agent) as c:
        s = socket.create_connection(("127.0.0.1", agent.spoe_port), timeout=5)
        s.sendall(sp.notify(1, 1, [sp.status_message()])[:9])
        s.shutdown(socket.SHUT_WR)
        # the half frame is dropped and the connection closed
        assert s.recv(100) == b""
        s.close()
        ack = c.query(3, 4, [sp.status_message("beta")])
        assert sp.ack_vars(ack) == expected_vars(agent, "beta")


def test_random_frames_never_hurt(agent):
    rnd = random.Random(4242)
    for i in range(200):
        with ready_client(agent) as c:
            n = rnd.randrange(0, 60)
            payload = bytes(rnd.randrange(256) for _ in range(n))
            ftype = rnd.choice([sp.NOTIFY, sp.NOTIFY, sp.UNSET, sp.HAPROXY_DISCONNECT, 7])
            flags = rnd.choice([sp.FIN, 0, sp.FIN | sp.ABORT, 0xFFFFFFFF])
            try:
                c.send(sp.frame(ftype, payload, rnd.randrange(1 << 20), rnd.randrange(1 << 20),
                                flags))
                c.send(sp.notify(1, 1, [sp.status_message()]))
                while True:
                    f = c.read_frame(timeout=2)
                    assert f.type in (sp.ACK, sp.AGENT_DISCONNECT), f
                    if f.type == sp.AGENT_DISCONNECT:
                        c.expect_closed()
                        break
                    if f.stream_id == 1 and f.frame_id == 1:
                        break
            except (sp.Closed, BrokenPipeError, ConnectionResetError):
                pass
    assert agent.proc.poll() is None


# --------------------------------------------------------------------------
# NOTIFY / ACK
# --------------------------------------------------------------------------

def test_status_of_each_node(agent):
    with ready_client(agent) as c:
        for i, name in enumerate([None, "alpha", "beta"]):
            ack = c.query(7, i, [sp.status_message(name)])
            assert sp.ack_vars(ack) == expected_vars(agent, name)
    v = expected_vars(agent, "beta")
    assert v["ready"] is False and v["state"] == "down" and v["reason"], v
    v = expected_vars(agent, "alpha")
    assert v["ready"] is True and v["write_node"] == "alpha" and v["ready_nodes"] == 1, v
    assert v["lag_bytes"] == 0   # plain PostgreSQL: nothing to lag behind


def test_ack_value_types(agent):
    with ready_client(agent) as c:
        ack = c.query(1, 1, [sp.status_message("alpha")])
    names = {name for _, _, name, _ in sp.read_actions(ack.payload)}
    assert names >= {"ready", "weight", "state", "reason", "write_node", "best_node",
                          "ready_nodes"}
    # Check the wire types: BOOL for ready, integers, strings.
    pos = 0
    wire = {}
    while pos < len(ack.payload):
        pos += 3
        n, pos = sp.read_varint(ack.payload, pos)
        name = ack.payload[pos:pos + n].decode()
        pos += n
        wire[name] = ack.payload[pos] & 0x0F
        _, pos = sp.read_typed(ack.payload, pos)
    assert wire["ready"] == sp.T_BOOL
    assert wire["weight"] in (sp.T_INT32, sp.T_INT64) and wire["ready_nodes"] in (sp.T_INT32, sp.T_INT64)
    for name in ("state", "reason", "write_node", "best_node"):
        assert wire[name] == sp.T_STRING, (name, wire)


def test_unknown_node(agent):
    with ready_client(agent) as c:
        ack = c.query(1, 2, [sp.status_message("nosuch")])
        v = sp.ack_vars(ack)
        assert v == expected_vars(agent, "nosuch")
        assert v["ready"] is False and v["state"] == "unknown" and v["reason"] == "unknown node nosuch"
        assert "lag_bytes" not in v
        # a name no node can have: control characters are not echoed
        ack = c.query(1, 3, [("pgbdr-status", [("node", "a\r\nb\x00c")])])
        assert sp.ack_vars(ack)["reason"] == "unknown node a??b?c"
        ack = c.query(1, 4, [("pgbdr-status", [("node", "n" * 300)])])
        v = sp.ack_vars(ack)
        assert v["state"] == "unknown" and len(v["reason"]) < 100


@pytest.mark.parametrize("args", [
    [("node", None)],                    # HAProxy sends NULL for a missing sample
    [("node", "")],
    [("other", "beta")],                 # not the node argument
    [("", "beta")],                      # unnamed argument
], ids=["null", "empty", "other-arg", "unnamed"])
def test_node_argument_fallbacks_to_default(agent, args):
    with ready_client(agent) as c:
        ack = c.query(2, 2, [("pgbdr-status", args)])
        assert sp.ack_vars(ack) == expected_vars(agent, None)


def test_node_argument_as_binary(agent):
    with ready_client(agent) as c:
        ack = c.query(2, 3, [("pgbdr-status", [("node", b"beta")])])
        assert sp.ack_vars(ack) == expected_vars(agent, "beta")


def test_unknown_message_gets_empty_ack(agent):
    with ready_client(agent) as c:
        ack = c.query(11, 12, [("something-else", [("x", 1)])])
        assert ack.payload == b""
        ack = c.query(11, 13, [])
        assert ack.payload == b""


def test_several_messages_in_one_notify(agent):
    with ready_client(agent) as c:
        ack = c.query(21, 22, [sp.status_message("alpha"), ("other", [("a", 1), ("b", "x")]),
                               sp.status_message("beta")])
    actions = sp.read_actions(ack.payload)
    alpha, beta = expected_vars(agent, "alpha"), expected_vars(agent, "beta")
    assert len(actions) == len(alpha) + len(beta)
    first = {name: value for _, _, name, value in actions[:len(alpha)]}
    second = {name: value for _, _, name, value in actions[len(alpha):]}
    assert first == alpha and second == beta


def test_small_frames_keep_the_first_variables(agent):
    with ready_client(agent, max_frame_size=256) as c:
        ack = c.query(1, 1, [sp.status_message("beta")] * 3)
        v = sp.ack_vars(ack)
        assert len(ack.payload) + 7 <= 256
        want = expected_vars(agent, "beta")
        for name in ("ready", "weight", "state"):
            assert v[name] == want[name]


def test_thousand_pipelined_notifies(agent):
    names = [None, "alpha", "beta", "nosuch"]
    frames = []
    for i in range(1000):
        msg = [sp.status_message(names[i % 4])]
        if i % 10 == 0:
            msg.append(("other", [("i", i)]))
        frames.append(sp.notify(i % 7, i, msg))
    status = agent.status_json()
    want = {n: expected_vars(agent, n, status) for n in names}
    with ready_client(agent) as c:
        c.send(frames)            # one write
        acks = c.read_frames(1000, timeout=10)
    seen = set()
    for ack in acks:
        assert ack.type == sp.ACK and ack.flags == sp.FIN, ack
        key = (ack.stream_id, ack.frame_id)
        assert key not in seen, key
        seen.add(key)
        i = ack.frame_id
        assert ack.stream_id == i % 7, ack
        assert sp.ack_vars(ack) == want[names[i % 4]], (i, ack)
    assert seen == {(i % 7, i) for i in range(1000)}


def test_odd_stream_ids_and_big_ids(agent):
    """HAProxy 3.1+ uses odd stream ids; ids are varints up to 64 bits."""
    with ready_client(agent, capabilities="pipelining") as c:
        for sid, fid in [(1, 1), (3, 1), (2**31 + 1, 7), (2**40 + 3, 2**33), (239, 240)]:
            ack = c.query(sid, fid, [sp.status_message()])
            assert sp.ack_vars(ack) == expected_vars(agent)


# --------------------------------------------------------------------------
# Fragmentation
# --------------------------------------------------------------------------

def big_payload(node="alpha", size=3000):
    return sp.messages_payload([sp.status_message(node), ("pgbdr-other", [("blob", "z" * size)])])


def test_fragmented_notify_is_reassembled(agent):
    before = metrics(agent)
    payload = big_payload()
    # Cuts inside the message name, inside the node name (mid-value),
    # inside the blob's length varint and all along the blob.
    node_at = payload.index(b"alpha")
    blob_at = payload.index(b"zzz")
    cuts = {3, node_at + 2, blob_at - 1} | set(range(blob_at + 100, len(payload), 500))
    frames = sp.fragments(41, 42, payload, cuts)
    assert len(frames) >= 5
    with ready_client(agent) as c:
        c.send(frames)
        ack = c.read_frame()
        assert ack.type == sp.ACK and (ack.stream_id, ack.frame_id) == (41, 42), ack
        assert sp.ack_vars(ack) == expected_vars(agent, "alpha")
        # and normal traffic after it
        ack = c.query(43, 44, [sp.status_message("beta")])
        assert sp.ack_vars(ack) == expected_vars(agent, "beta")
    after = metrics(agent)
    key = 'pgbdr_spop_fragmented_total{result="reassembled"}'
    assert after[key] == before[key] + 1


def test_fragments_one_byte_each(agent):
    payload = sp.messages_payload([sp.status_message("beta")])
    frames = sp.fragments(1, 2, payload, range(1, len(payload)))
    with ready_client(agent) as c:
        c.send(frames)
        ack = c.read_frame()
        assert (ack.stream_id, ack.frame_id) == (1, 2)
        assert sp.ack_vars(ack) == expected_vars(agent, "beta")


def test_aborted_fragmentation_gets_no_ack(agent):
    payload = big_payload()
    with ready_client(agent) as c:
        c.send(sp.frame(sp.NOTIFY, payload[:1000], 5, 6, flags=0))
        c.send(sp.frame(sp.UNSET, payload[1000:2000], 5, 6, flags=0))
        c.send(sp.frame(sp.UNSET, b"", 5, 6, flags=sp.FIN | sp.ABORT))
        ack = c.query(5, 7, [sp.status_message("alpha")])   # the first frame back is this ACK
        assert sp.ack_vars(ack) == expected_vars(agent, "alpha")


def test_interlaced_fragments_are_refused(agent):
    payload = big_payload()
    with ready_client(agent) as c:
        c.send(sp.frame(sp.NOTIFY, payload[:100], 1, 1, flags=0))
        c.send(sp.notify(2, 2, [sp.status_message()]))
        c.expect_disconnect(11)


def test_continuation_of_nothing_is_invalid(agent):
    with ready_client(agent) as c:
        c.send(sp.frame(sp.UNSET, b"abc", 1, 1))
        c.expect_disconnect(4)


def test_reassembly_limit(agent):
    payload = big_payload(size=MAX_FRAGMENTED + 1000)
    frames = sp.fragments(3, 3, payload, range(8000, len(payload), 8000))
    with ready_client(agent) as c:
        try:
            c.send(frames)
        except (BrokenPipeError, ConnectionResetError):
            pass
        c.expect_disconnect(3)


# --------------------------------------------------------------------------
# Resource limits
# --------------------------------------------------------------------------

def vm_rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_client_that_never_reads(agent, witness):
    """Replies pile up only to a bound: then the agent stops reading from
    that client, and everyone else is served."""
    rss0 = vm_rss_kb(agent.pid)
    frame = sp.notify(1, 1, [sp.status_message("beta")])
    chunk = frame * 2000
    c = ready_client(agent)
    c.sock.setblocking(False)
    sent = 0
    stalled_since = None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            sent += c.sock.send(chunk)
            stalled_since = None
        except BlockingIOError:
            stalled_since = stalled_since or time.monotonic()
            if time.monotonic() - stalled_since > 1.0:
                break
            time.sleep(0.01)
    assert stalled_since, f"the agent kept reading: {sent} bytes sent"
    # ACKs are ~6x bigger than NOTIFYs: without the bound the agent would
    # hold several times `sent` bytes.
    grown = vm_rss_kb(agent.pid) - rss0
    assert grown < 24 * 1024, f"agent RSS grew {grown} kB after {sent} bytes"
    witness.next_id += 1
    ack = witness.query(9, witness.next_id, [sp.status_message("beta")])
    assert sp.ack_vars(ack) == expected_vars(agent, "beta")
    c.close()


@pytest.fixture(scope="module")
def tight_agent(module_registry):
    """Short client_timeout and max_clients=3; no database needed."""
    spoe_port = free_port()
    a = Agent(module_registry, [
        ("agent", dict(FAST_AGENT, spoe_listen=f"127.0.0.1:{spoe_port}", client_timeout="2s",
                       max_clients=3, spoe_max_fragmented="1MB")),
        ("node.beta", {"dsn": dead_dsn(), "flavor": "plain"}),
    ], name="agent-spop-tight")
    a.spoe_port = spoe_port
    return a.start()


def test_idle_before_hello_times_out(tight_agent):
    with client(tight_agent) as c:
        t0 = time.monotonic()
        c.expect_disconnect(2, timeout=5)
        assert 1.5 < time.monotonic() - t0 < 4


def test_idle_after_hello_times_out(tight_agent):
    """HELLO and then silence: no NOTIFY within client_timeout."""
    with ready_client(tight_agent) as c:
        t0 = time.monotonic()
        c.expect_disconnect(2, timeout=5)
        assert 1.5 < time.monotonic() - t0 < 4


def test_answered_connection_stays_open_while_idle(tight_agent):
    """Once a connection has carried an ACK, idle time between frames is
    HAProxy's to limit: 2.6 closes after its "timeout idle", 3.1+ keeps
    the connection in its server pool and ignores "timeout idle". A
    partial frame still gets client_timeout."""
    with ready_client(tight_agent) as c:
        ack = c.query(1, 1, [sp.status_message()])
        assert sp.ack_vars(ack)["state"] == "down"
        # twice client_timeout (2s) of silence: no DISCONNECT, no close
        assert not select.select([c.sock], [], [], 4.5)[0]
        ack = c.query(3, 1, [sp.status_message()])
        assert sp.ack_vars(ack)["state"] == "down"
        t0 = time.monotonic()
        c.send(sp.hello()[:3])
        c.expect_disconnect(2, timeout=5)
        assert 1.5 < time.monotonic() - t0 < 4


def test_trickled_frame_times_out(tight_agent):
    """A byte now and then is not a frame: the timeout still applies."""
    data = sp.hello()
    with client(tight_agent) as c:
        t0 = time.monotonic()
        for b in data:
            # stop once the agent has answered: bytes sent after its close
            # would draw a reset
            if select.select([c.sock], [], [], 0)[0] or time.monotonic() - t0 > 6:
                break
            c.send(bytes([b]))
            time.sleep(0.2)
        c.expect_disconnect(2, timeout=5)
        assert time.monotonic() - t0 < 5


def test_max_clients(tight_agent):
    held = [ready_client(tight_agent) for _ in range(3)]
    try:
        with client(tight_agent) as extra:
            extra.expect_closed(timeout=1)
        held.pop().close()

        def fourth_accepted():
            with client(tight_agent) as c:
                c.hello()
                return True
        wait_for(fourth_accepted, 1.5, interval=0.05, desc="a slot frees up")
        for c in held:
            ack = c.query(1, 1, [sp.status_message()])
            assert ack.type == sp.ACK
    finally:
        for c in held:
            c.close()


def test_metrics_count_frames_and_disconnects(agent):
    before = metrics(agent)
    with client(agent) as c:
        c.send(sp.hello(versions="1.0"))
        c.expect_disconnect(8)
    with ready_client(agent) as c:
        c.query(1, 1, [sp.status_message()])
        c.send(sp.disconnect())
        c.expect_disconnect(0)
    after = metrics(agent)

    def delta(key):
        return after.get(key, 0) - before.get(key, 0)
    assert delta('pgbdr_spop_disconnects_total{status="8"}') == 1
    assert delta('pgbdr_spop_disconnects_total{status="0"}') == 1
    assert delta('pgbdr_spop_frames_received_total{type="haproxy-hello"}') == 2
    assert delta('pgbdr_spop_frames_received_total{type="notify"}') >= 1
    assert delta('pgbdr_spop_frames_sent_total{type="ack"}') >= 1
    assert delta('pgbdr_spop_connections_total') >= 2


def test_no_connection_left_behind(agent, witness):
    def only_witness():
        return metrics(agent)["pgbdr_spop_connections_open"] == 1
    wait_for(only_witness, 5, desc="every test connection closed by the agent")
    if os.path.isdir(f"/proc/{agent.pid}/fd"):
        assert agent.fd_count() < 64
