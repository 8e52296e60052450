"""
Hostile clients get the protocol's own error, never a guess:

- HTTP as RFC 9112 says: conflicting Content-Length, a bare CR, HTTP/1.1
  without Host (or with two) are 400; a method token HTTP does not
  define is 501 while POST/DELETE... stay 405; a version other than 1.x
  is 505 (on the listener and in --inetd);
- agent-check echoes no control character and no invalid UTF-8 from an
  unknown node name, and answers a name that ends with the client's FIN
  instead of "\\n" at once;
- a reload applies the SPOP settings to new connections, and says so.

The nodes are fake_pg.py servers in their healthy mode: no PostgreSQL
is needed to speak to clients.
"""

import os
import re
import signal
import socket
import time

import pytest

import spop_client as sp
from agentcheck_helpers import agent_check, connect, read_all
from fake_pg import FakePg
from harness import CAPTURED, Agent, free_port, run_cli, wait_for, write_config

SEND_WAIT = 5.0     # [agent] agent_send_wait: far longer than a FIN answer may take


@pytest.fixture(scope="module")
def fakes(module_registry):
    return [FakePg(module_registry, free_port()).start() for _ in range(2)]


@pytest.fixture(scope="module")
def agent(module_registry, fakes, module_password):
    port = free_port()
    a = Agent(module_registry, [
        ("agent", {"interval": "300ms", "timeout": "1s", "rise": 1, "fall": 1,
                   "agent_listen": f"127.0.0.1:{port}",
                   "agent_send_wait": f"{int(SEND_WAIT * 1000)}ms"}),
        ("node.n1", {"dsn": fakes[0].dsn(module_password), "flavor": "plain"}),
        ("node.n2", {"dsn": fakes[1].dsn(module_password), "flavor": "plain"}),
    ], name="agent-strict").start()
    a.agent_port = port
    a.wait_state("n1", "ready", 15)
    a.wait_state("n2", "ready", 15)
    return a


def status_of(agent, raw):
    data = agent.request_raw(raw, timeout=3)
    assert data.startswith(b"HTTP/1."), data
    head = data.split(b"\r\n\r\n", 1)[0]
    return int(head.split()[1]), head


@pytest.mark.parametrize("raw,code", [
    (b"POST /live HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
    (b"GET /live HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400),
    (b"GET /live HTTP/1.1\rHost: x\r\n\r\n", 400),
    (b"GET /live HTTP/1.1\r\n\r\n", 400),
    (b"GET /live HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (b"FOO /live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 501),
    (b"BREW /live HTTP/1.0\r\n\r\n", 501),
    (b"DELETE /live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 405),
    (b"GET /live HTTP/2.0\r\n\r\n", 505),
    (b"GET /live HTTP/0.9\r\n\r\n", 505),
    # what stays accepted
    (b"GET /live HTTP/1.0\r\n\r\n", 200),
    (b"GET /live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 200),
    (b"POST /live HTTP/1.0\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab", 405),
], ids=["conflicting-length", "bare-cr-in-value", "bare-cr-ending-line", "no-host",
        "two-hosts", "unknown-method", "unknown-method-1.0", "known-method", "http2",
        "http09", "http10-no-host", "http11-host", "same-length-twice"])
def test_http_strictness(agent, raw, code):
    status, head = status_of(agent, raw)
    assert status == code, head
    if code == 405:
        assert b"\r\nAllow: GET, HEAD, OPTIONS" in head, head
    assert agent.get("/live").status == 200


def test_inetd_unsupported_version_is_505(registry, fakes, password):
    cfg = write_config(registry, [
        ("agent", {"timeout": "1s", "allow_root": "yes"}),
        ("node.n1", {"dsn": fakes[0].dsn(password), "flavor": "plain"}),
    ])
    r = run_cli(["-c", cfg, "--inetd"], input=b"GET / HTTP/2.0\r\n\r\n", timeout=30)
    assert r.stdout.startswith(b"HTTP/1.1 505 "), r.stdout


@pytest.mark.parametrize("name", [
    b"n\x1b[31mred\x07\x0b\x0c\x7fx",
    b"caf\xe9\xff\xfe",
    b"\x01\x02\x03",
], ids=["escape-sequence", "latin1", "only-controls"])
def test_agent_check_echoes_no_control_characters(agent, name):
    reply, _ = agent_check(agent.agent_port, send=name + b"\n")
    assert reply.startswith(b"down ready #unknown node"), reply
    assert reply.endswith(b"\n") and reply.count(b"\n") == 1, reply
    body = reply[:-1]
    assert not any(b < 0x20 or b == 0x7f for b in body), reply
    reply.decode("utf-8")   # strict: valid UTF-8


@pytest.mark.parametrize("send,want", [
    (b"n2", b"up ready 100%\n"),
    (b"n2 write", None),
    (b"nosuch", b"down ready #unknown node nosuch\n"),
], ids=["name", "name-write", "unknown"])
def test_agent_check_answers_a_name_ended_by_fin(agent, send, want):
    t0 = time.monotonic()
    with connect(agent.agent_port, timeout=SEND_WAIT + 2) as s:
        s.sendall(send)
        s.shutdown(socket.SHUT_WR)
        reply = read_all(s, SEND_WAIT + 2)
    took = time.monotonic() - t0
    CAPTURED.text("agent-check fin", reply)
    assert took < SEND_WAIT / 2, (took, reply)
    assert reply.endswith(b"\n") and reply.count(b"\n") == 1, reply
    if want is not None:
        assert reply == want, reply
    else:
        assert reply.startswith((b"up ready", b"down ready #")), reply


def test_agent_check_closed_without_a_word_gets_nothing_wrong(agent):
    """A client that connects and closes at once costs nothing and leaves
    the agent answering."""
    with connect(agent.agent_port) as s:
        s.shutdown(socket.SHUT_WR)
        read_all(s, SEND_WAIT + 2)
    reply, _ = agent_check(agent.agent_port, send=b"n1\n")
    assert reply == b"up ready 100%\n", reply


def test_reload_applies_spop_settings(registry, fakes, password):
    """A reload applies the SPOP frame size, fragmentation and timeout to
    new connections and says so; none is kept silently."""
    spoe_port = free_port()

    def config(frame, fragmented, timeout):
        return [("agent", {"interval": "300ms", "timeout": "1s", "rise": 1, "fall": 1,
                           "spoe_listen": f"127.0.0.1:{spoe_port}",
                           "spoe_max_frame_size": str(frame),
                           "spoe_max_fragmented": fragmented, "client_timeout": timeout}),
                ("node.n1", {"dsn": fakes[0].dsn(password), "flavor": "plain"})]
    a = Agent(registry, config(16380, "1MB", "5s"), name="agent-reload").start()
    a.wait_state("n1", "ready", 15)
    with sp.SpopClient(spoe_port) as old:
        kv = old.hello().kv()
        assert kv["max-frame-size"] == 16380 and "fragmentation" in kv["capabilities"], kv

        text = a.config_text
        for key, value in (("spoe_max_frame_size", "4096"), ("spoe_max_fragmented", "65536"),
                           ("client_timeout", "700ms")):
            text, n = re.subn(rf"(?m)^{key}\s*=.*$", f"{key} = {value}", text)
            assert n == 1, (key, text)
        tmp = a.config_path + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        with open(f"/proc/{a.pid}/status") as f:
            uid = int([line.split()[2] for line in f if line.startswith("Uid:")][0])
        os.chown(tmp, uid, -1)
        os.rename(tmp, a.config_path)
        a.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in a.log(), 5, desc="reload: " + a.log()[-1500:])
        assert re.search(r"reload: spop max-frame-size 4096, fragmented messages up to 65536 bytes",
                         a.log()), a.log()[-2000:]

        with sp.SpopClient(spoe_port) as new:
            kv = new.hello().kv()
            assert kv["max-frame-size"] == 4096, kv
            # the new client_timeout: an idle connection gets DISCONNECT 2 (timeout)
            t0 = time.monotonic()
            new.expect_disconnect(2, timeout=5)
            assert time.monotonic() - t0 < 3, "the old 5 s client_timeout was kept"
        # the open connection keeps the frame size it negotiated
        ack = old.query(1, 1, [sp.status_message("n1")])
        assert sp.ack_vars(ack)["ready"] is True
