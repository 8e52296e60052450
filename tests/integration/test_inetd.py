"""--inetd: one HTTP check on stdin/stdout, for the classic xinetd line."""

import json
import re

import pytest

from harness import FAST_AGENT, free_port, node_section, run_cli, write_config


def parse(out):
    head, sep, body = out.partition(b"\r\n\r\n")
    assert sep, f"no end of headers: {out!r}"
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"^HTTP/1\.[01] (\d{3}) ", lines[0])
    assert m, lines[0]
    headers = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip() for l in lines[1:]}
    assert "content-length" in headers, headers
    return int(m.group(1)), headers, body


@pytest.fixture(scope="module")
def configs(module_registry, plain_pg, module_password):
    dead = free_port()
    up = write_config(module_registry, [
        ("agent", dict(FAST_AGENT, http_listen=f"127.0.0.1:{free_port()}")),
        ("node.n1", node_section(plain_pg, module_password)),
        ("node.dead", {"dsn": f"host=127.0.0.1 port={dead} dbname=app user=pgbdr_monitor "
                              f"password={module_password}", "flavor": "plain"}),
    ], "inetd-up")
    down = write_config(module_registry, [
        ("agent", dict(FAST_AGENT, http_listen=f"127.0.0.1:{free_port()}")),
        ("node.dead", {"dsn": f"host=127.0.0.1 port={dead} dbname=app user=pgbdr_monitor "
                              f"password={module_password}", "flavor": "plain"}),
    ], "inetd-down")
    return up, down


def inetd(path, request, timeout=15):
    r = run_cli(["-c", path, "--inetd"], input=request, timeout=timeout)
    return r


def test_default_probe_ready(configs, module_password):
    up, _ = configs
    r = inetd(up, b"OPTIONS / HTTP/1.0\r\n\r\n")
    assert r.returncode == 0, r.stderr
    status, headers, body = parse(r.stdout)
    assert status == 200, r.stdout
    assert int(headers["content-length"]) == len(body), r.stdout
    assert b"ready" in body and b"n1" in body
    assert module_password.encode() not in r.stdout + r.stderr


def test_default_probe_down(configs):
    _, down = configs
    r = inetd(down, b"OPTIONS / HTTP/1.0\r\n\r\n")
    status, headers, body = parse(r.stdout)
    assert status == 503, r.stdout
    assert int(headers["content-length"]) == len(body)
    assert b"down" in body and b"dead" in body


def test_get_node_and_status(configs):
    up, _ = configs
    status, headers, body = parse(inetd(up, b"GET /node/dead HTTP/1.0\r\n\r\n").stdout)
    assert status == 503 and int(headers["content-length"]) == len(body)
    status, headers, body = parse(inetd(up, b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n").stdout)
    assert status == 200 and int(headers["content-length"]) == len(body)
    st = json.loads(body)
    states = {n["name"]: n["state"] for n in st["nodes"]}
    assert states == {"n1": "ready", "dead": "down"}


def test_head(configs):
    up, _ = configs
    r = inetd(up, b"HEAD / HTTP/1.0\r\n\r\n")
    status, headers, body = parse(r.stdout)
    assert status == 200 and body == b""
    full = parse(inetd(up, b"GET / HTTP/1.0\r\n\r\n").stdout)
    assert int(headers["content-length"]) == len(full[2])


def test_errors(configs):
    up, _ = configs
    status, headers, body = parse(inetd(up, b"GET /nosuch HTTP/1.0\r\n\r\n").stdout)
    assert status == 404 and int(headers["content-length"]) == len(body)
    status, headers, body = parse(inetd(up, b"POST / HTTP/1.0\r\nContent-Length: 0\r\n\r\n").stdout)
    assert status == 405 and int(headers["content-length"]) == len(body)
    status, headers, body = parse(inetd(up, b"garbage\r\n\r\n").stdout)
    assert status == 400 and int(headers["content-length"]) == len(body)


def test_empty_stdin_gets_the_classic_answer(configs):
    """A client that sends nothing (the classic checker never read the
    request) gets the answer for "/", with a correct Content-Length."""
    up, _ = configs
    r = inetd(up, b"", timeout=15)
    assert r.returncode == 0, r.stderr
    status, headers, body = parse(r.stdout)
    assert status == 200 and int(headers["content-length"]) == len(body)
    assert b"ready" in body
