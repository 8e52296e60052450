"""
pytest fixtures for the pgbdr-agent integration suite.

Run: /usr/bin/python3 -m pytest tests/integration -x -q
Needs root (servers run as OS user postgres via runuser), PostgreSQL 15
with pglogical, haproxy, and the built agent (build/agent/pgbdr-agent or
$PGBDR_AGENT).
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import CAPTURED, PgServer, Registry  # noqa: E402,F401


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    config.addinivalue_line("markers", "haproxy: starts or runs HAProxy ($PGBDR_HAPROXY, "
                            "default haproxy); .ci/run reruns these for each HAProxy version")
    config.addinivalue_line("markers", "peers: runs a real peer built from $PGBDR_PEERS "
                            "(tests/peers/build.sh)")
    config.addinivalue_line("markers", "alone: .ci/run runs it after the others, with nothing "
                            "beside it (see ALONE_MODULES)")


# Modules that .ci/run runs by themselves, after the rest of the suite
# has run in parallel (pytest-xdist, one module per worker): their
# bounds are tight enough that other tests' load on the two cores would
# make them fail, or hide what they watch for.
ALONE_MODULES = {
    # down within interval + timeout + 0.2 s, a healthy node's answers
    # under 50 ms, and fd/RSS drift over hundreds of fault cycles
    "test_faults",
    # a good client's answers stay fast while hostile ones flood the agent
    "test_client_abuse",
    # RSS bounds while clients try to make the agent hold memory
    "test_memory_budget",
    # every process under valgrind: several times the CPU of the rest
    "test_valgrind",
    # a hostile or hung server may not delay the other nodes' answers
    "test_hostile_node",
    "test_hung_node",
    # HAProxy's write servers sampled every 100 ms: a gap is measured, not only two writers
    "test_write_leader",
    # "nobody leads without quorum": etcd 3.4's cut-off leader renews leases
    # until it steps down, one election timeout later; an etcd member
    # starved of CPU steps down later still, and its agent rightly leads on
    "test_write_leader_etcd",
    "test_write_leader_pernode",
    # agent-check answers timed against agent-send's wait (within 0.3 s)
    "test_agent_check",
}


def _runs_haproxy(item):
    # A test that uses a fixture starting HAProxy, or that checks an
    # example file with haproxy -c.
    return (any("haproxy" in name for name in item.fixturenames)
            or item.name.startswith("test_example_file"))


# The longest modules, longest first (seconds of wall time in a CI run):
# pytest-xdist's --dist loadfile hands modules to workers in collection
# order, so one of these collected last would run on alone at the end.
LONG_MODULES_FIRST = [
    "test_pgd_emulation",       # ~90 s, 146 cases
    "test_lua_haproxy",         # ~50 s
    "test_package_check",       # ~40 s, dpkg-buildpackage
    "test_install",             # ~25 s, meson install
    "test_lag_direction",
    "test_spop_protocol",
    "test_judgement",
    "test_connect_slots",
    "test_operations",
    "test_native_logical",
]


def _module_rank(item):
    name = item.module.__name__
    return LONG_MODULES_FIRST.index(name) if name in LONG_MODULES_FIRST else len(LONG_MODULES_FIRST)


def pytest_collection_modifyitems(config, items):
    items.sort(key=_module_rank)   # stable: each module's tests keep their order
    for item in items:
        if item.module.__name__ in ALONE_MODULES:
            item.add_marker(pytest.mark.alone)
        if _runs_haproxy(item):
            item.add_marker(pytest.mark.haproxy)
            # in the JUnit XML too, for .ci/run's per-version summary
            item.user_properties.append(("haproxy", "1"))


def _binary_or_fail():
    b = harness.agent_binary()
    if not os.access(b, os.X_OK):
        pytest.fail(f"agent binary {b} missing: run `meson setup build && meson compile -C build` "
                    f"or set PGBDR_AGENT", pytrace=False)
    return b


@pytest.fixture(scope="session")
def agent_bin():
    return _binary_or_fail()


def _finish(reg):
    # Stop agents first so their shutdown lines are in the logs, then
    # look for leaked passwords, then remove everything.
    for item in list(reg.items):
        if isinstance(item, (harness.Agent,)):
            try:
                item.stop()
            except Exception:  # noqa: BLE001
                pass
    leaks = CAPTURED.leaks()
    errors = reg.cleanup()
    assert not leaks, f"password leaked into captured output: {leaks}"
    assert not errors, f"cleanup errors: {errors}"


@pytest.fixture(scope="module")
def module_registry(agent_bin):
    """Temp dirs and processes that live for one test module."""
    reg = Registry()
    yield reg
    _finish(reg)


@pytest.fixture
def registry(agent_bin):
    """Temp dirs and processes that live for one test."""
    reg = Registry()
    yield reg
    _finish(reg)


@pytest.fixture(autouse=True)
def _no_password_leak():
    """After every test: no captured output holds a test password."""
    yield
    leaks = CAPTURED.leaks()
    assert not leaks, f"password leaked into captured output: {leaks}"


@pytest.fixture
def password():
    return CAPTURED.secret(harness.new_password())


@pytest.fixture(scope="module")
def module_password():
    return CAPTURED.secret(harness.new_password())


@pytest.fixture(scope="module")
def plain_pg(module_registry, module_password):
    """A plain PostgreSQL server with database `app` and the least-privilege
    monitoring role from sql/grants/plain.sql."""
    pg = PgServer(module_registry, "plain", pglogical=False).init().start()
    pg.create_database("app")
    pg.apply_grants("plain", dbname="app", password=module_password)
    return pg
