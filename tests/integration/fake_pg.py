"""
A fake PostgreSQL server speaking just enough of the v3 protocol to be
hostile: it authenticates with a cleartext password (so it knows the
password the agent sends), answers the agent's detect query and a
prepared plain probe like a healthy plain server, and in its other
modes answers the way a broken or malicious node (or a man in the
middle) could:

    ok            a healthy plain node
    copy_out      CopyOutResponse, then endless CopyData
    copy_in       CopyInResponse
    copy_both     CopyBothResponse
    endless_rows  RowDescription, then DataRow for ever
    huge_error    one ErrorResponse of HUGE_ERROR bytes
    echo_auth     the password echoed in a FATAL error during authentication
    echo_query    the password echoed in an ERROR answering a query
    notice_connect endless NoticeResponse before ReadyForQuery
    notice_idle   endless NoticeResponse once the connection is idle
    non_utf8      an ErrorResponse with Latin-1 bytes, an escape sequence
                  and a CR/LF forged log line
    stall         AuthenticationOk, then silence

It runs as its own process (python3 fake_pg.py PORT MODEFILE; the
floods must not compete with the test for the GIL); the mode is read
from MODEFILE at each new message, and a connection opened in another
mode closes itself, so that a mode change reaches the agent's
persistent connection at once. `replies(mode)` gives the bytes a mode
sends after authentication, for the fuzz corpus.
"""

import os
import socket
import struct
import subprocess
import sys
import threading
import time

HUGE_ERROR = 100 << 20
DETECT_COLUMNS = 19          # agent/probe.c: DET_N_COLS
DETECT_INTS = (0, 6, 7, 9)   # version, subscriptions, walsenders, logical slots
CONNECT_MODES = ("echo_auth", "notice_connect", "stall")
MODES = ("ok", "copy_out", "copy_in", "copy_both", "endless_rows", "huge_error",
         "echo_auth", "echo_query", "notice_connect", "notice_idle", "non_utf8", "stall")


def msg(kind, payload=b""):
    return kind + struct.pack(">I", len(payload) + 4) + payload


def cstr(s):
    return (s.encode() if isinstance(s, str) else s) + b"\0"


def error(severity, text, code=b"XX000", kind=b"E"):
    return msg(kind, b"S" + cstr(severity) + b"V" + cstr(severity) + b"C" + cstr(code)
               + b"M" + cstr(text) + b"\0")


def notice(i):
    return error("NOTICE", f"flood {i}\r\n2030-01-01T00:00:00.000Z ERROR forged line",
                 b"00000", b"N")


def row_description(names, type_oid=25):
    out = struct.pack(">H", len(names))
    for n in names:
        out += cstr(n) + struct.pack(">IhIhih", 0, 0, type_oid, -1, -1, 0)
    return msg(b"T", out)


def data_row(values):
    out = struct.pack(">H", len(values))
    for v in values:
        out += struct.pack(">I", len(v)) + v
    return msg(b"D", out)


def ready():
    return msg(b"Z", b"I")


def detect_reply():
    values = [b"150000" if i == 0 else b"0" if i in DETECT_INTS else b"f"
              for i in range(DETECT_COLUMNS)]
    return (row_description([f"c{i}" for i in range(DETECT_COLUMNS)]) + data_row(values)
            + msg(b"C", cstr("SELECT 1")))


def non_utf8_error():
    text = b"caf\xe9 \xff\xfe \x1b[31mred\x1b[0m\r\n2030-01-01T00:00:00.000Z ERROR forged"
    return msg(b"E", b"SERROR\0VERROR\0CXX000\0M" + text + b"\0\0")


def replies(mode, password="S3cret-fuzz"):
    """What a mode sends in answer to a query (a bounded sample of the
    endless ones), for the fuzz corpus."""
    if mode == "ok":
        return detect_reply() + ready()
    if mode == "copy_out":
        return msg(b"H", b"\0\0\1\0\0") + msg(b"d", b"row\n") * 4
    if mode == "copy_in":
        return msg(b"G", b"\0\0\1\0\0")
    if mode == "copy_both":
        return msg(b"W", b"\0\0\0")
    if mode == "endless_rows":
        return row_description(["x"]) + data_row([b"x" * 100]) * 64
    if mode == "huge_error":
        return error("ERROR", "E" * 65536)
    if mode in ("echo_query", "echo_auth"):
        return error("ERROR", f"syntax error near \"{password}\"") + ready()
    if mode in ("notice_connect", "notice_idle"):
        return b"".join(notice(i) for i in range(64))
    if mode == "non_utf8":
        return non_utf8_error() + ready()
    return b""


class Conn:
    def __init__(self, sock, mode_file):
        self.sock = sock
        self.mode_file = mode_file
        self.buf = b""
        self.password = ""

    def mode(self):
        try:
            with open(self.mode_file) as f:
                return f.read().strip() or "ok"
        except OSError:
            return "ok"

    def recv_exact(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_message(self):
        kind = self.recv_exact(1)
        (n,) = struct.unpack(">I", self.recv_exact(4))
        return kind, self.recv_exact(n - 4)

    def startup(self):
        while True:
            (n,) = struct.unpack(">I", self.recv_exact(4))
            body = self.recv_exact(n - 4)
            (code,) = struct.unpack(">I", body[:4])
            if code in (80877103, 80877104):   # SSLRequest, GSSENCRequest
                self.sock.sendall(b"N")
                continue
            return

    def authenticate(self, mode):
        self.sock.sendall(msg(b"R", struct.pack(">I", 3)))
        kind, body = self.read_message()
        if kind != b"p":
            raise EOFError
        self.password = body.rstrip(b"\0").decode("utf-8", "replace")
        if mode == "echo_auth":
            self.sock.sendall(error("FATAL", f"password authentication failed: "
                                             f"\"{self.password}\" is wrong", b"28P01"))
            raise EOFError
        self.sock.sendall(msg(b"R", struct.pack(">I", 0)))

    def flood(self, make):
        i = 0
        while True:
            self.sock.sendall(b"".join(make(i + k) for k in range(256)))
            i += 256

    def welcome(self, mode):
        if mode == "stall":
            time.sleep(3600)
        if mode == "notice_connect":
            self.flood(notice)
        self.sock.sendall(
            msg(b"S", cstr("server_version") + cstr("15.0"))
            + msg(b"S", cstr("server_encoding") + cstr("UTF8"))
            + msg(b"S", cstr("client_encoding") + cstr("UTF8"))
            + msg(b"S", cstr("standard_conforming_strings") + cstr("on"))
            + msg(b"S", cstr("integer_datetimes") + cstr("on"))
            + msg(b"K", struct.pack(">II", os.getpid(), 1))
            + ready())

    def attack(self, mode, simple):
        """Answer a query the hostile way; False when the mode is benign.
        In the extended protocol, the Sync that follows sends ReadyForQuery."""
        done = ready() if simple else b""
        if mode == "copy_out":
            self.sock.sendall(msg(b"H", b"\0\0\1\0\0"))
            self.flood(lambda i: msg(b"d", b"row %d\n" % i))
        elif mode in ("copy_in", "copy_both"):
            self.sock.sendall(msg(b"G", b"\0\0\1\0\0") if mode == "copy_in"
                              else msg(b"W", b"\0\0\0"))
            time.sleep(3600)
        elif mode == "endless_rows":
            if simple:
                self.sock.sendall(row_description(["x"]))
            self.flood(lambda i: data_row([b"%0100d" % i]))
        elif mode == "huge_error":
            body = b"SERROR\0VERROR\0CXX000\0M"
            self.sock.sendall(b"E" + struct.pack(">I", 4 + len(body) + HUGE_ERROR + 2) + body)
            chunk = b"E" * (1 << 20)
            for _ in range(HUGE_ERROR >> 20):
                self.sock.sendall(chunk)
            self.sock.sendall(b"\0\0" + done)
        elif mode == "echo_query":
            self.sock.sendall(error("ERROR", f"syntax error at or near \"{self.password}\"",
                                    b"42601") + done)
        elif mode == "non_utf8":
            self.sock.sendall(non_utf8_error() + done)
        else:
            return False
        return True

    def serve(self):
        self.startup()
        opened_in = self.mode()
        self.authenticate(opened_in)
        self.welcome(opened_in)
        pending = b""
        while True:
            kind, body = self.read_message()
            mode = self.mode()
            if mode != opened_in and (mode in CONNECT_MODES or opened_in in CONNECT_MODES):
                return
            if mode == "notice_idle":
                self.flood(notice)
            if kind == b"X":
                return
            if kind in (b"Q", b"E") and mode not in ("ok", "notice_idle"):
                self.sock.sendall(pending)
                pending = b""
                if self.attack(mode, kind == b"Q"):
                    continue
            if kind == b"Q":
                self.sock.sendall(detect_reply() + ready())
            elif kind == b"P":
                pending += msg(b"1")
            elif kind == b"B":
                pending += msg(b"2")
            elif kind == b"D":
                pending += row_description(["in_recovery", "read_only"], 16)
            elif kind == b"E":
                pending += data_row([b"f", b"f"]) + msg(b"C", cstr("SELECT 1"))
            elif kind == b"S":
                self.sock.sendall(pending + ready())
                pending = b""


def serve_forever(port, mode_file):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(64)
    print("started", flush=True)

    def run(sock):
        try:
            Conn(sock, mode_file).serve()
        except (OSError, EOFError, struct.error):
            pass
        finally:
            sock.close()
    while True:
        sock, _ = ls.accept()
        threading.Thread(target=run, args=(sock,), daemon=True).start()


class FakePg:
    """The fake server as a child process; registered for cleanup."""

    def __init__(self, registry, port):
        self.port = port
        self.mode_file = os.path.join(registry.mkdtemp("fakepg"), "mode")
        self.set_mode("ok")
        self.proc = None
        registry.add(self)

    def start(self):
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), str(self.port),
                                      self.mode_file], stdout=subprocess.PIPE)
        assert self.proc.stdout.readline().strip() == b"started"
        return self

    def set_mode(self, mode):
        assert mode in MODES, mode
        tmp = self.mode_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(mode)
        os.replace(tmp, self.mode_file)

    def dsn(self, password):
        return (f"host=127.0.0.1 port={self.port} dbname=app user=monitor "
                f"password={password} sslmode=disable connect_timeout=5")

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


if __name__ == "__main__":
    serve_forever(int(sys.argv[1]), sys.argv[2])
