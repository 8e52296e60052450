"""--once [--json]: probe every node once, print, exit 0 iff the default
node is ready or degraded."""

import json

import pytest

from harness import FAST_AGENT, free_port, node_section, run_cli, write_config


@pytest.fixture(scope="module")
def dead_port():
    return free_port()


def cfg(registry, pg, password, dead_port, default_dead=False):
    n1 = ("node.n1", node_section(pg, password))
    dead = ("node.dead", {"dsn": f"host=127.0.0.1 port={dead_port} dbname=app "
                                 f"user=pgbdr_monitor password={password}", "flavor": "plain"})
    nodes = [dead, n1] if default_dead else [n1, dead]
    return write_config(registry, [("agent", dict(FAST_AGENT))] + nodes, "once")


def test_once_json_ready(module_registry, plain_pg, module_password, dead_port):
    r = run_cli(["-c", cfg(module_registry, plain_pg, module_password, dead_port), "--once",
                 "--json"])
    assert r.returncode == 0, (r.stdout, r.stderr)
    data = json.loads(r.stdout)
    assert data["default_node"] == "n1"
    nodes = {n["name"]: n for n in data["nodes"]}
    assert nodes["n1"]["state"] == "ready" and nodes["n1"]["weight"] == 100
    assert nodes["n1"]["flavor"] == "plain"
    assert nodes["n1"]["checked_at"] is not None
    assert nodes["dead"]["state"] == "down" and nodes["dead"]["reason"]
    out = (r.stdout + r.stderr).decode()
    assert module_password not in out


def test_once_json_default_down_exits_1(module_registry, plain_pg, module_password, dead_port):
    r = run_cli(["-c", cfg(module_registry, plain_pg, module_password, dead_port,
                           default_dead=True), "--once", "--json"])
    assert r.returncode == 1, (r.stdout, r.stderr)
    data = json.loads(r.stdout)
    assert data["default_node"] == "dead"
    nodes = {n["name"]: n for n in data["nodes"]}
    assert nodes["dead"]["state"] == "down"
    assert nodes["n1"]["state"] == "ready"


def test_once_table(module_registry, plain_pg, module_password, dead_port):
    r = run_cli(["-c", cfg(module_registry, plain_pg, module_password, dead_port), "--once"])
    assert r.returncode == 0, (r.stdout, r.stderr)
    text = r.stdout.decode()
    lines = [l for l in text.splitlines() if "n1" in l]
    assert lines and "ready" in lines[0], text
    lines = [l for l in text.splitlines() if "dead" in l]
    assert lines and "down" in lines[0], text
    with pytest.raises(ValueError):
        json.loads(text)


def test_once_wrong_password_is_down_and_silent(module_registry, plain_pg, dead_port):
    from harness import CAPTURED, new_password
    wrong = CAPTURED.secret(new_password())
    path = write_config(module_registry, [("agent", dict(FAST_AGENT)),
                                          ("node.n1", node_section(plain_pg, wrong))], "oncepw")
    r = run_cli(["-c", path, "--once", "--json"])
    assert r.returncode == 1, (r.stdout, r.stderr)
    n = json.loads(r.stdout)["nodes"][0]
    assert n["state"] == "down"
    assert "password" in n["reason"].lower() or "auth" in n["reason"].lower(), n
    assert wrong not in (r.stdout + r.stderr).decode()


def test_once_is_quick(module_registry, plain_pg, module_password, dead_port):
    import time
    t0 = time.monotonic()
    r = run_cli(["-c", cfg(module_registry, plain_pg, module_password, dead_port), "--once",
                 "--json"])
    assert r.returncode == 0
    assert time.monotonic() - t0 < 3.0  # one round, bounded by timeout (1s)
