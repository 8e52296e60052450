"""Config files as an operator writes them: long dsn lines, %include
and include_dir for per-node files, every error listed with the file
and line it is in, hostile files (NUL bytes, devices) and warnings about
secrets others can read. Against a real PostgreSQL where it loads."""

import json
import os
import time

import pytest

from harness import FAST_AGENT, ini_text, run_cli

pytestmark = pytest.mark.usefixtures("plain_pg")


def text(r):
    return (r.stdout + r.stderr).decode("utf-8", "replace")


def write(path, content, mode=0o600):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb" if isinstance(content, bytes) else "w") as f:
        f.write(content)
    os.chmod(path, mode)
    return path


def long_dsn(pg, password, length=400):
    """A working dsn of exactly `length` characters (a long options value
    stands for the SSL file paths a real one carries)."""
    base = pg.tcp_dsn("app", password=password) + " application_name="
    return base + "x" * (length - len(base))


def test_400_character_dsn_line_loads(registry, plain_pg, module_password):
    d = registry.mkdtemp("longdsn")
    dsn = long_dsn(plain_pg, module_password)
    assert len(dsn) == 400
    path = write(os.path.join(d, "a.ini"), ini_text([("agent", FAST_AGENT),
                                                     ("node.n1", {"dsn": dsn, "flavor": "plain"})]))
    r = run_cli(["-c", path, "--check-config"])
    assert r.returncode == 0, text(r)
    r = run_cli(["-c", path, "--once", "--json"])
    assert r.returncode == 0, text(r)
    assert json.loads(r.stdout)["nodes"][0]["state"] == "ready"


def test_include_and_include_dir(registry, plain_pg, module_password):
    d = registry.mkdtemp("include")
    write(os.path.join(d, "agent.ini"), ini_text([("agent", FAST_AGENT)]))
    node = lambda n: ini_text([(f"node.{n}", {"dsn": plain_pg.tcp_dsn(
        "app", password=module_password), "flavor": "plain", "priority": n[-1]})])
    write(os.path.join(d, "conf.d", "20-n2.ini"), node("n2"))
    write(os.path.join(d, "conf.d", "10-n1.ini"), node("n1"))
    write(os.path.join(d, "conf.d", "README"), "not a config file\n")
    path = write(os.path.join(d, "main.ini"), "%include agent.ini\ninclude_dir = conf.d\n")
    r = run_cli(["-c", path, "--once", "--json"])
    assert r.returncode == 0, text(r)
    nodes = json.loads(r.stdout)["nodes"]
    assert [n["name"] for n in nodes] == ["n1", "n2"], nodes
    assert all(n["state"] == "ready" for n in nodes), nodes


def test_broken_included_file_reports_its_own_line(registry):
    d = registry.mkdtemp("badinclude")
    inc = write(os.path.join(d, "conf.d", "n1.ini"),
                "[node.n1]\nhost = 127.0.0.1\n\nflavor = oracle\n")
    path = write(os.path.join(d, "main.ini"),
                 "[agent]\ninterval = soon\ninclude_dir = conf.d\n[policy]\nmin_weight = 101\n")
    r = run_cli(["-c", path, "--check-config"])
    out = text(r)
    assert r.returncode == 1, out
    # every error, each where it is, in file order
    expected = [f"{path}:2: key 'interval'", f"{inc}:4: key 'flavor'",
                f"{path}:5: key 'min_weight'"]
    positions = [out.find(e) for e in expected]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), out
    assert "configuration OK" not in out


def test_dsn_port_and_host_are_checked(registry):
    d = registry.mkdtemp("dsncheck")
    for dsn, what in (("postgres://u@h:99999/db", "invalid port '99999'"),
                      ("host=db/1 dbname=x", "invalid host 'db/1'"),
                      ("hostaddr=db1", "invalid hostaddr 'db1'")):
        path = write(os.path.join(d, "a.ini"), f"[node.a]\ndsn = {dsn}\n")
        r = run_cli(["-c", path, "--check-config"])
        assert r.returncode == 1 and f"{path}:2: key 'dsn': {what}" in text(r), text(r)


def test_nul_byte_is_an_error_with_its_line(registry):
    d = registry.mkdtemp("nul")
    path = write(os.path.join(d, "a.ini"), b"[postgresql]\nhost = a\x00b\n")
    r = run_cli(["-c", path, "--check-config"])
    assert r.returncode == 1 and f"{path}:2: NUL byte" in text(r), text(r)


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/urandom", "/proc/self/fd/0"])
def test_device_or_endless_file_fails_fast(path):
    # what starting the binary costs on this machine (sanitizers, load)
    start = time.monotonic()
    run_cli(["--version"], timeout=30)
    baseline = time.monotonic() - start
    start = time.monotonic()
    r = run_cli(["-c", path, "--check-config"], input=None, timeout=30)
    assert time.monotonic() - start < baseline + 2
    assert r.returncode == 1 and "not a regular file" in text(r), text(r)


def test_endless_regular_file_is_capped(registry):
    d = registry.mkdtemp("big")
    path = write(os.path.join(d, "a.ini"), "[postgresql]\nhost = a\n" + "# pad\n" * 200000)
    r = run_cli(["-c", path, "--check-config"])
    assert r.returncode == 1 and "larger than 1MB" in text(r), text(r)


def test_warns_on_readable_secrets(registry, password):
    d = registry.mkdtemp("secrets")
    passfile = write(os.path.join(d, "pgpass"), f"*:*:*:*:{password}\n", 0o644)
    cfg = (f"[agent]\nuser = nobody\n[postgresql]\nhost = a\npassword = {password}\n"
           f"[node.b]\ndsn = host=b passfile={passfile}\n"
           f"[node.c]\ndsn = host=c sslpassword={password}\n")
    path = write(os.path.join(d, "a.ini"), cfg, 0o644)
    r = run_cli(["-c", path, "--check-config"])
    out = text(r)
    assert r.returncode == 0, out
    assert f"{path}: warning: holds a password and is readable by every user" in out, out
    assert f"passfile {passfile} is readable by others" in out, out
    assert password not in out

    os.chmod(path, 0o640)
    os.chmod(passfile, 0o600)
    r = run_cli(["-c", path, "--check-config"])
    assert r.returncode == 0 and "warning" not in text(r), text(r)

    # sslpassword alone counts as a password
    path2 = write(os.path.join(d, "b.ini"),
                  f"[agent]\nuser = nobody\n[node.c]\nhost = c\nsslpassword = {password}\n", 0o644)
    r = run_cli(["-c", path2, "--check-config"])
    assert "readable by every user" in text(r), text(r)


def test_warns_on_root_without_user(registry):
    d = registry.mkdtemp("root")
    path = write(os.path.join(d, "a.ini"), "[postgresql]\nhost = a\n")
    r = run_cli(["-c", path, "--check-config"])
    if os.geteuid() == 0:
        assert "warning: [agent] user is not set" in text(r), text(r)
        assert "refuses to start" in text(r)
    path = write(os.path.join(d, "b.ini"), "[agent]\nuser = nobody\n[postgresql]\nhost = a\n")
    r = run_cli(["-c", path, "--check-config"])
    assert "warning" not in text(r), text(r)
