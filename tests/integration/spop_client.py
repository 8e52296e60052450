"""
An independent SPOP (HAProxy SPOE protocol) encoder/decoder and a small
blocking client, written from doc/SPOE.txt for the integration tests.
It shares no code with spoe/spop.c: a bug in one should not hide in
the other.

    c = SpopClient(port).connect()
    hello = c.hello()                       # -> Frame (AGENT-HELLO)
    c.send(notify(1, 1, [("pgbdr-status", [("node", "n1")])]))
    ack = c.read_frame()
    vars = ack_vars(ack)                    # {"ready": True, ...}
"""

import socket
import struct
import time

# Frame types
UNSET = 0
HAPROXY_HELLO = 1
HAPROXY_DISCONNECT = 2
NOTIFY = 3
AGENT_HELLO = 101
AGENT_DISCONNECT = 102
ACK = 103

FIN = 0x1
ABORT = 0x2

# Typed data
T_NULL, T_BOOL, T_INT32, T_UINT32, T_INT64, T_UINT64 = 0, 1, 2, 3, 4, 5
T_IPV4, T_IPV6, T_STRING, T_BINARY = 6, 7, 8, 9

SCOPE_TXN = 2
ACTION_SET_VAR = 1
ACTION_UNSET_VAR = 2


class Typed:
    """A value with an explicit SPOP type (ints default to INT64)."""

    def __init__(self, type_, value):
        self.type = type_
        self.value = value

    def __repr__(self):
        return f"Typed({self.type}, {self.value!r})"


def uint32(v):
    return Typed(T_UINT32, v)


# ---------------------------------------------------------------------------
# varints: 0..239 in one byte; then a 4-bit head and 7-bit continuations,
# each stage subtracting what the previous one already covered.
# ---------------------------------------------------------------------------

def varint(v):
    if v < 0:
        v &= (1 << 64) - 1
    if v < 240:
        return bytes([v])
    out = bytearray([(v & 0x0F) | 0xF0])
    v = (v - 240) >> 4
    while v >= 128:
        out.append((v & 0x7F) | 0x80)
        v = (v - 128) >> 7
    out.append(v)
    return bytes(out)


def read_varint(buf, pos):
    """(value, new_pos); ValueError when truncated."""
    if pos >= len(buf):
        raise ValueError("truncated varint")
    b = buf[pos]
    pos += 1
    if b < 240:
        return b, pos
    v = b
    shift = 4
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        v += b << shift
        shift += 7
        if b < 128:
            return v, pos


def signed64(v):
    return v - (1 << 64) if v >= (1 << 63) else v


def string(s):
    if isinstance(s, str):
        s = s.encode()
    return varint(len(s)) + s


def typed(value):
    if isinstance(value, Typed):
        t, v = value.type, value.value
    elif value is None:
        t, v = T_NULL, None
    elif isinstance(value, bool):
        t, v = T_BOOL, value
    elif isinstance(value, int):
        t, v = T_INT64, value
    elif isinstance(value, str):
        t, v = T_STRING, value
    elif isinstance(value, (bytes, bytearray)):
        t, v = T_BINARY, bytes(value)
    else:
        raise TypeError(value)
    if t == T_NULL:
        return bytes([T_NULL])
    if t == T_BOOL:
        return bytes([T_BOOL | (0x10 if v else 0)])
    if t in (T_INT32, T_UINT32, T_INT64, T_UINT64):
        return bytes([t]) + varint(v)
    if t in (T_STRING, T_BINARY):
        return bytes([t]) + string(v)
    if t == T_IPV4:
        return bytes([t]) + bytes(v)
    if t == T_IPV6:
        return bytes([t]) + bytes(v)
    return bytes([t]) + bytes(v)


def read_typed(buf, pos):
    if pos >= len(buf):
        raise ValueError("truncated typed data")
    tag = buf[pos]
    pos += 1
    t = tag & 0x0F
    if t == T_NULL:
        return None, pos
    if t == T_BOOL:
        return bool(tag & 0x10), pos
    if t in (T_INT32, T_INT64):
        v, pos = read_varint(buf, pos)
        return signed64(v), pos
    if t in (T_UINT32, T_UINT64):
        return read_varint(buf, pos)
    if t == T_IPV4:
        return bytes(buf[pos:pos + 4]), pos + 4
    if t == T_IPV6:
        return bytes(buf[pos:pos + 16]), pos + 16
    if t in (T_STRING, T_BINARY):
        n, pos = read_varint(buf, pos)
        if pos + n > len(buf):
            raise ValueError("truncated string")
        raw = bytes(buf[pos:pos + n])
        return (raw.decode("utf-8", "replace") if t == T_STRING else raw), pos + n
    raise ValueError(f"reserved type {t}")


# ---------------------------------------------------------------------------
# Frames
# ---------------------------------------------------------------------------

def frame(ftype, payload=b"", stream_id=0, frame_id=0, flags=FIN):
    body = bytes([ftype]) + struct.pack(">I", flags) + varint(stream_id) + varint(frame_id) + payload
    return struct.pack(">I", len(body)) + body


def kv_list(items):
    """items: iterable of (key, value); value as for typed()."""
    return b"".join(string(k) + typed(v) for k, v in items)


def read_kv_list(payload):
    out = {}
    pos = 0
    while pos < len(payload):
        n, pos = read_varint(payload, pos)
        key = bytes(payload[pos:pos + n]).decode()
        pos += n
        out[key], pos = read_typed(payload, pos)
    return out


def hello_payload(versions="2.0", max_frame_size=16380, capabilities="pipelining,async",
                  healthcheck=None, engine_id="test-engine", omit=()):
    items = []
    if "supported-versions" not in omit:
        items.append(("supported-versions", versions))
    if "max-frame-size" not in omit:
        items.append(("max-frame-size", uint32(max_frame_size)))
    if "capabilities" not in omit:
        items.append(("capabilities", capabilities))
    if engine_id is not None:
        items.append(("engine-id", engine_id))
    if healthcheck is not None:
        items.append(("healthcheck", healthcheck))
    return kv_list(items)


def hello(**kw):
    return frame(HAPROXY_HELLO, hello_payload(**kw))


def disconnect(status=0, message="normal"):
    return frame(HAPROXY_DISCONNECT, kv_list([("status-code", uint32(status)), ("message", message)]))


def messages_payload(messages):
    """messages: list of (name, [(arg_name, value), ...])."""
    out = bytearray()
    for name, args in messages:
        out += string(name) + bytes([len(args)])
        for arg_name, value in args:
            out += string(arg_name) + typed(value)
    return bytes(out)


def notify(stream_id, frame_id, messages, flags=FIN):
    return frame(NOTIFY, messages_payload(messages), stream_id, frame_id, flags)


def status_message(node=None):
    """The pgbdr-status message, with a node argument when node is given."""
    return ("pgbdr-status", [] if node is None else [("node", node)])


def fragments(stream_id, frame_id, payload, cuts):
    """A NOTIFY payload cut at the given offsets: a NOTIFY frame without
    FIN, then UNSET frames, the last one with FIN."""
    bounds = [0] + sorted(cuts) + [len(payload)]
    parts = [payload[a:b] for a, b in zip(bounds, bounds[1:])]
    out = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        out.append(frame(NOTIFY if i == 0 else UNSET, part, stream_id, frame_id,
                         FIN if last else 0))
    return out


class Frame:
    def __init__(self, ftype, flags, stream_id, frame_id, payload):
        self.type = ftype
        self.flags = flags
        self.stream_id = stream_id
        self.frame_id = frame_id
        self.payload = payload

    def kv(self):
        return read_kv_list(self.payload)

    def __repr__(self):
        return (f"<Frame type={self.type} flags={self.flags:#x} sid={self.stream_id} "
                f"fid={self.frame_id} payload={self.payload[:80]!r}>")


def parse_frame(data):
    """One whole frame (with its length prefix) -> Frame."""
    (n,) = struct.unpack(">I", data[:4])
    assert n == len(data) - 4, (n, len(data))
    body = data[4:]
    ftype = body[0]
    (flags,) = struct.unpack(">I", body[1:5])
    sid, pos = read_varint(body, 5)
    fid, pos = read_varint(body, pos)
    return Frame(ftype, flags, sid, fid, bytes(body[pos:]))


def read_actions(payload):
    """ACK payload -> list of (action, scope, name, value)."""
    out = []
    pos = 0
    while pos < len(payload):
        action = payload[pos]
        nb_args = payload[pos + 1]
        pos += 2
        scope = payload[pos]
        pos += 1
        n, pos = read_varint(payload, pos)
        name = bytes(payload[pos:pos + n]).decode()
        pos += n
        if action == ACTION_SET_VAR:
            assert nb_args == 3, nb_args
            value, pos = read_typed(payload, pos)
        elif action == ACTION_UNSET_VAR:
            assert nb_args == 2, nb_args
            value = None
        else:
            raise ValueError(f"unknown action {action}")
        out.append((action, scope, name, value))
    return out


def ack_vars(ack):
    """The set-var actions of an ACK as a dict (all must be in txn scope)."""
    out = {}
    for action, scope, name, value in read_actions(ack.payload):
        assert action == ACTION_SET_VAR and scope == SCOPE_TXN, (action, scope, name)
        out[name] = value
    return out


class Closed(Exception):
    """The agent closed the connection."""


class SpopClient:
    def __init__(self, port, host="127.0.0.1", timeout=5.0):
        self.host = host
        self.port = port
        self.timeout = timeout
        self.sock = None
        self.buf = bytearray()

    def connect(self):
        self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self

    def close(self):
        if self.sock:
            self.sock.close()
            self.sock = None

    def __enter__(self):
        return self.connect() if self.sock is None else self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        if isinstance(data, (list, tuple)):
            data = b"".join(data)
        self.sock.sendall(data)

    def _fill(self, deadline):
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = self.sock.recv(1 << 20)
        except socket.timeout:
            raise AssertionError(f"no frame within {self.timeout}s (buffered {bytes(self.buf[:64])!r})")
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            raise Closed(bytes(self.buf))
        self.buf += chunk

    def read_frame(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while len(self.buf) < 4:
            self._fill(deadline)
        (n,) = struct.unpack(">I", self.buf[:4])
        while len(self.buf) < 4 + n:
            self._fill(deadline)
        data = bytes(self.buf[:4 + n])
        del self.buf[:4 + n]
        return parse_frame(data)

    def read_frames(self, count, timeout=None):
        return [self.read_frame(timeout) for _ in range(count)]

    def expect_closed(self, timeout=None):
        """Assert the agent closes with nothing more to read."""
        deadline = time.monotonic() + (timeout or self.timeout)
        try:
            while True:
                self._fill(deadline)
                raise AssertionError(f"unexpected bytes before close: {bytes(self.buf[:80])!r}")
        except Closed:
            return True

    def hello(self, **kw):
        self.send(hello(**kw))
        f = self.read_frame()
        assert f.type == AGENT_HELLO, f
        return f

    def expect_disconnect(self, status, timeout=None):
        """Read an AGENT-DISCONNECT with this status code, then the close."""
        f = self.read_frame(timeout)
        assert f.type == AGENT_DISCONNECT, f
        assert f.flags & FIN and f.stream_id == 0 and f.frame_id == 0, f
        kv = f.kv()
        assert kv.get("status-code") == status, kv
        assert isinstance(kv.get("message"), str) and kv["message"], kv
        self.expect_closed(timeout)
        return kv

    def query(self, stream_id, frame_id, messages):
        """One NOTIFY, one ACK (checked to echo the ids)."""
        self.send(notify(stream_id, frame_id, messages))
        f = self.read_frame()
        assert f.type == ACK and f.stream_id == stream_id and f.frame_id == frame_id, f
        assert f.flags == FIN, f
        return f
