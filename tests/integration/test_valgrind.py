"""Valgrind memcheck on a short scenario with a real PostgreSQL: the
agent runs under

    valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect
             --error-exitcode=99 --track-fds=yes

and is exercised on every listener (HTTP: GET, HEAD, OPTIONS, 404, 405,
malformed and unfinished requests; agent-check; SPOP: HELLO, NOTIFY,
fragments, DISCONNECT, a healthcheck and garbage), then a SIGHUP
reload that adds and removes nodes, a stop and start of the
PostgreSQL server, and SIGTERM. It must exit 0, with no memory error,
no definite or indirect leak, and no descriptor left open but the
standard ones.

Skipped when valgrind is not installed, and when the agent binary is
built with AddressSanitizer (CI's second suite): valgrind cannot run
it, and the plain build's suite has run this scenario already."""

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

import spop_client as sp
from agentcheck_helpers import agent_check
from harness import (Agent, agent_binary, free_port, ini_text, node_section,
                     read_until_close, wait_for)

# Generous: under memcheck the agent runs 20-50 times slower.
SLOW = {"interval": "500ms", "timeout": "5s", "stale_after": "30s", "rise": 1, "fall": 1,
        "log_level": "debug", "client_timeout": "5s", "leader_handover": "0s",
        "leader_return_delay": "0s"}
VALGRIND_ARGS = ["--leak-check=full", "--errors-for-leak-kinds=definite,indirect",
                 "--error-exitcode=99", "--track-fds=yes", "--num-callers=30",
                 "--vgdb=no"]
START_TIMEOUT = 90
STOP_TIMEOUT = 90


def _sanitized(path):
    with open(path, "rb") as f:
        data = f.read()
    return b"__asan_init" in data or b"__tsan_init" in data or b"__msan_init" in data


@pytest.fixture(scope="module")
def valgrind():
    vg = shutil.which("valgrind")
    if not vg:
        pytest.skip("valgrind is not installed")
    if _sanitized(agent_binary()):
        pytest.skip("the agent binary is built with a sanitizer, which valgrind cannot run; "
                    "this scenario runs in the plain build's suite")
    return vg


class ValgrindAgent(Agent):
    """An Agent whose process is valgrind running the agent binary."""

    def __init__(self, registry, config, valgrind, **kw):
        super().__init__(registry, config, **kw)
        self.valgrind = valgrind
        self.vglog = os.path.join(self.base, "valgrind.log")
        self.make_readable_by_agent()

    def make_readable_by_agent(self):
        # As root the agent drops to `user` after binding: a SIGHUP
        # reload reads the file as that user.
        user = re.search(r"(?m)^user = (\S+)$", self.config_text)
        if os.geteuid() == 0 and user:
            pw = pwd.getpwnam(user.group(1))
            os.chown(self.config_path, pw.pw_uid, pw.pw_gid)

    def start(self, wait=True, timeout=START_TIMEOUT):
        if self._log:
            self._log.close()
        self._log = open(self.logfile, "ab")
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        cmd = [self.valgrind, f"--log-file={self.vglog}"] + VALGRIND_ARGS + [
            agent_binary(), "-c", self.config_path] + self.extra_args
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, env=env, cwd=self.base)
        if wait:
            self.wait_live(timeout)
        return self

    def rewrite(self, sections):
        text = ini_text(sections)
        tmp = self.config_path + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.rename(tmp, self.config_path)
        self.config_text = text
        self.make_readable_by_agent()

    def terminate(self, timeout=STOP_TIMEOUT):
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"agent did not exit within {timeout}s of SIGTERM:\n"
                                 f"{self.log()[-3000:]}")

    def valgrind_log(self):
        try:
            with open(self.vglog, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""


# --------------------------------------------------------------------------
# the exchanges
# --------------------------------------------------------------------------

def exercise_http(agent):
    assert agent.get("/").status == 200
    for path in ("/node/n1", "/node/n1/read", "/write", "/read", "/status", "/metrics",
                 "/live", "/node/n1?lag=16MB"):
        r = agent.get(path)
        assert r.status in (200, 503), (path, r)
    assert agent.get("/", method="HEAD").status == 200
    assert agent.get("/", method="OPTIONS", version="1.0").status == 200
    assert agent.get("/node/nope").status == 404
    assert agent.get("/nosuch").status == 404
    assert agent.get("/", method="POST", headers={"Content-Length": "0"}).status == 405
    assert agent.get("/?lag=abc").status == 400
    # keep-alive: two requests on one connection
    with agent.connect(timeout=10) as s:
        s.sendall(b"GET /live HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /node/n1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = read_until_close(s, 10)
    assert data.count(b"HTTP/1.1 ") == 2, data[:300]
    # malformed, oversized and unfinished requests
    for raw in (b"HELLO\r\n\r\n", b"GET / HTTP/1.1\r\nno-colon-header\r\n\r\n",
                b"\x00\x01\x02 / HTTP/1.1\r\n\r\n",
                b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n"):
        with agent.connect(timeout=10) as s:
            try:
                s.sendall(raw)
                s.shutdown(socket.SHUT_WR)
                read_until_close(s, 10)
            except (ConnectionResetError, BrokenPipeError):
                pass
    with agent.connect(timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and hang up mid-request


def exercise_agent_check(port):
    for send, want in ((b"n1\n", b"up ready"), (b"n1 write\n", None), (b"n2\n", None),
                       (b"nope\n", b"down ready #unknown node"), (b"a b c\n", b"down ready #")):
        data, _ = agent_check(port, send=send, timeout=15)
        assert data.endswith(b"\n") and data.count(b"\n") == 1, (send, data)
        if want:
            assert data.startswith(want), (send, data)
    # no agent-send: the default node after agent_send_wait
    data, _ = agent_check(port, timeout=15)
    assert data.endswith(b"\n"), data


def exercise_spop(port):
    with sp.SpopClient(port, timeout=15) as c:
        c.hello(capabilities="pipelining,async,fragmentation")
        ack = c.query(1, 1, [sp.status_message("n1")])
        assert sp.ack_vars(ack)["ready"] is True, ack
        ack = c.query(2, 1, [sp.status_message("nope"), ("other", [("x", 1)])])
        assert sp.ack_vars(ack)["ready"] is False, ack
        payload = sp.messages_payload([sp.status_message("n2")])
        c.send(sp.fragments(3, 1, payload, [5, 11]))
        f = c.read_frame()
        assert f.type in (sp.ACK, sp.AGENT_DISCONNECT), f
        if f.type == sp.ACK:
            c.send(sp.disconnect(0, "normal"))
            f = c.read_frame()
            assert f.type == sp.AGENT_DISCONNECT, f
    with sp.SpopClient(port, timeout=15) as c:  # option spop-check
        c.hello(capabilities="", healthcheck=True, engine_id=None)
        c.expect_closed()
    with sp.SpopClient(port, timeout=15) as c:  # garbage, then a bad version
        c.send(sp.frame(sp.HAPROXY_HELLO, b"garbage"))
        c.expect_disconnect(4)
    with sp.SpopClient(port, timeout=15) as c:
        c.send(sp.hello(versions="1.0"))
        c.expect_disconnect(8)
    with sp.SpopClient(port, timeout=15) as c:  # hang up mid-frame
        c.send(sp.hello()[:9])


# --------------------------------------------------------------------------

def test_memcheck_scenario(valgrind, registry, plain_pg, module_password):
    agent_port, spoe_port = free_port(), free_port()
    agent_items = dict(SLOW, agent_listen=f"127.0.0.1:{agent_port}",
                       spoe_listen=f"127.0.0.1:{spoe_port}", spoe_max_fragmented="64kB")

    def sections(names):
        return [("agent", agent_items)] + [
            (f"node.{n}", node_section(plain_pg, module_password, application_name=f"vg-{n}",
                                       priority=10 * (i + 1)))
            for i, n in enumerate(names)]

    agent = ValgrindAgent(registry, sections(["n1", "n2"]), valgrind, name="agent-valgrind")
    agent_items = dict(agent_items, http_listen=f"127.0.0.1:{agent.port}")
    if os.geteuid() == 0:
        agent_items["user"] = "nobody"
    else:
        agent_items["allow_root"] = "yes"
    agent.start()
    agent.wait_state("n1", "ready", 60)
    agent.wait_state("n2", "ready", 60)
    wait_for(lambda: agent.node("n1")["write_leader"], 60, desc="n1 becomes write leader")

    exercise_http(agent)
    exercise_agent_check(agent_port)
    exercise_spop(spoe_port)

    # SIGHUP: n2 goes, n3 comes, n1 stays
    agent.rewrite(sections(["n1", "n3"]))
    agent.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: sorted(n["name"] for n in agent.status_json()["nodes"]) == ["n1", "n3"],
             60, desc="the reload: n1 and n3")
    agent.wait_state("n3", "ready", 60)
    # and a reload that is rejected
    with open(agent.config_path, "a") as f:
        f.write("\n[node.bad]\ncolour = blue\n")
    agent.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: 'pgbdr_reloads_total{result="rejected"} 1' in agent.get("/metrics").text,
             60, desc="the rejected reload")

    # the node goes down and comes back
    plain_pg.stop()
    agent.wait_state("n1", "down", 60)
    assert agent.get("/").status == 503
    data, _ = agent_check(agent_port, send=b"n1\n", timeout=15)
    assert data.startswith(b"down ready #"), data
    plain_pg.start()
    agent.wait_state("n1", "ready", 90)
    agent.wait_state("n3", "ready", 60)
    exercise_spop(spoe_port)

    rc = agent.terminate()
    vglog = agent.valgrind_log()
    tail = vglog[-6000:]
    assert rc == 0, f"exit code {rc} (99: valgrind found errors)\n{tail}\n--- agent log ---\n" \
                    f"{agent.log()[-3000:]}"
    assert "ERROR SUMMARY: 0 errors" in vglog, tail
    for bad in ("Invalid read", "Invalid write", "uninitialised", "Invalid free",
                "Mismatched free", "definitely lost in loss record",
                "indirectly lost in loss record", "Source and destination overlap"):
        assert bad not in vglog, f"{bad!r} in the valgrind log:\n{tail}"
    assert not re.search(r"definitely lost: [1-9]", vglog), tail
    assert not re.search(r"indirectly lost: [1-9]", vglog), tail
    # --track-fds: nothing open at exit but what the agent inherited
    # (stdin, stdout, stderr and valgrind's own log)
    assert re.search(r"FILE DESCRIPTORS: \d+ open \(\d+ std\) at exit", vglog), tail
    assert not leaked_descriptors(vglog), f"descriptors left open at exit:\n{tail}"


def leaked_descriptors(vglog):
    """The "Open ... N:" entries of --track-fds not marked as inherited."""
    lines = [re.sub(r"^==\d+== ?", "", line) for line in vglog.splitlines()]
    leaked = []
    for i, line in enumerate(lines):
        m = re.match(r"Open .*?(\d+):", line)
        if m and int(m.group(1)) > 2:
            following = lines[i + 1] if i + 1 < len(lines) else ""
            if "<inherited from parent>" not in following:
                leaked.append(line)
    return leaked
