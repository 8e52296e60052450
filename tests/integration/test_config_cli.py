"""CLI and config validation: --check-config, --version, --help."""

import os
import re

import pytest

from harness import CAPTURED, new_password, run_cli, write_config

CLASSIC_INI = "[postgresql]\nhost=localhost\ndatabase=suppliers\nuser=postgres\npassword=postgres\n"


def out(r):
    return (r.stdout + r.stderr).decode("utf-8", "replace")


def test_classic_database_ini_is_valid(registry):
    path = write_config(registry, CLASSIC_INI, "classic")
    with open(path) as f:
        assert f.read() == CLASSIC_INI  # byte for byte the classic file
    r = run_cli(["-c", path, "--check-config"])
    assert r.returncode == 0, out(r)


def test_classic_database_ini_with_agent_section_is_valid(registry):
    path = write_config(registry, CLASSIC_INI + "\n[agent]\nhttp_listen = 127.0.0.1:9200\n"
                        "interval = 500ms\ntimeout = 2s\nrise = 2\nfall = 2\n"
                        "[policy]\ndrain_lag = 16MB\nmax_lag = 64MB\nmax_lag_time = 30\n"
                        "min_weight = 10\nread_only = ready\n"
                        "[node.peer]\ndsn = host=10.0.0.2 port=5432 dbname=suppliers user=postgres\n"
                        "priority = 2\nflavor = bdr\n", "classic2")
    r = run_cli(["-c", path, "--check-config"])
    assert r.returncode == 0, out(r)


# (config text, line of the error, key named in the message)
BAD_CONFIGS = [
    pytest.param("[postgresql]\nhost=localhost\n\n[agent]\ninterval = banana\n", 5, "interval",
                 id="bad-duration"),
    pytest.param("[postgresql]\nhost=localhost\n[policy]\nmax_lag = 12 parsecs\n", 4, "max_lag",
                 id="bad-size"),
    pytest.param("[postgresql]\nhost=localhost\n[policy]\nread_only = maybe\n", 4, "read_only",
                 id="bad-read-only"),
    pytest.param("[node.a]\nhost=localhost\nflavor = oracle\n", 3, "flavor", id="bad-flavor"),
    pytest.param("[agent]\nhttp_listen = 127.0.0.1:99999\n[node.a]\nhost=x\n", 2, "http_listen",
                 id="bad-port"),
    pytest.param("[postgresql]\nhost=localhost\n[agent]\nrise = -3\n", 4, "rise", id="bad-rise"),
]


@pytest.mark.parametrize("text,line,key", BAD_CONFIGS)
def test_bad_value_names_file_line_and_key(registry, text, line, key):
    path = write_config(registry, text, "bad")
    r = run_cli(["-c", path, "--check-config"])
    msg = out(r)
    assert r.returncode == 1, msg
    assert f"{path}:{line}" in msg, msg
    assert key in msg, msg


def test_unknown_key_fails(registry):
    path = write_config(registry, "[postgresql]\nhost=localhost\n[agent]\ninterval = 1s\n"
                        "intervall = 2s\n", "unknown")
    r = run_cli(["-c", path, "--check-config"])
    msg = out(r)
    assert r.returncode == 1, msg
    assert f"{path}:5" in msg, msg
    assert "intervall" in msg, msg


def test_unknown_section_fails(registry):
    path = write_config(registry, "[postgresql]\nhost=localhost\n[polcy]\nmax_lag = 1MB\n", "sect")
    r = run_cli(["-c", path, "--check-config"])
    msg = out(r)
    assert r.returncode == 1, msg
    assert f"{path}:3" in msg, msg
    assert "polcy" in msg, msg


def test_no_node_fails(registry):
    path = write_config(registry, "[agent]\ninterval = 1s\n", "nonode")
    r = run_cli(["-c", path, "--check-config"])
    assert r.returncode == 1, out(r)
    assert path in out(r)


def test_missing_file_fails(registry):
    path = os.path.join(registry.mkdtemp("missing"), "nope.ini")
    r = run_cli(["-c", path, "--check-config"])
    assert r.returncode == 1, out(r)
    assert path in out(r)


def test_config_error_does_not_echo_password(registry):
    pw = CAPTURED.secret(new_password())
    # An unterminated quote in a DSN that holds a password: the error must
    # name the file, line and key, but never print the password.
    path = write_config(registry, f"[node.a]\ndsn = host=127.0.0.1 password={pw} "
                                  f"application_name='oops\n", "dsnerr")
    r = run_cli(["-c", path, "--check-config"])
    msg = out(r)
    assert r.returncode == 1, msg
    assert f"{path}:2" in msg and "dsn" in msg, msg
    assert pw not in msg


def test_valid_config_with_password_is_silent_about_it(registry):
    pw = CAPTURED.secret(new_password())
    path = write_config(registry, f"[postgresql]\nhost=127.0.0.1\ndatabase=x\nuser=u\n"
                                  f"password={pw}\n[node.b]\ndsn = host=127.0.0.1 dbname=x "
                                  f"user=u password={pw}\n", "pw")
    r = run_cli(["-c", path, "--check-config"])
    assert r.returncode == 0, out(r)
    assert pw not in out(r)


def test_version():
    r = run_cli(["--version"])
    assert r.returncode == 0, out(r)
    assert re.search(r"pgbdr-agent\D*\d+\.\d+\.\d+", out(r)), out(r)


def test_help():
    r = run_cli(["--help"])
    assert r.returncode == 0, out(r)
    text = out(r)
    for opt in ("-c", "--check-config", "--once", "--json", "--inetd", "--version"):
        assert opt in text, (opt, text)


def test_unknown_option_fails():
    r = run_cli(["--no-such-option"])
    assert r.returncode != 0
