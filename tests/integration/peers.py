"""
Real peers for the integration tests: HAProxy 3.x, BDR 1.0 on its
patched PostgreSQL 9.4 and Spock 5, built by tests/peers/build.sh from
the tarballs in $PGBDR_PEERS (default ../shared/peers next to the
repository) and cached, so that only the first run builds.

Without that folder (a user's clone), tests that need a peer skip with
one line naming the folder.
"""

import os
import subprocess

import pytest

from harness import ROOT

BUILD_SH = os.path.join(ROOT, "tests", "peers", "build.sh")
PEERS_DIR = os.environ.get("PGBDR_PEERS", os.path.join(os.path.dirname(ROOT), "shared", "peers"))


def require():
    """At the top of a module of real-peer tests: without $PGBDR_PEERS
    the whole module is skipped, with one line."""
    if not os.path.isdir(PEERS_DIR):
        pytest.skip(f"real peers skipped: PGBDR_PEERS ({PEERS_DIR}) is not a folder",
                    allow_module_level=True)


def build(peer):
    """The path tests/peers/build.sh prints for peer (a binary, an
    install prefix or a staged tree), building it on first use; skips
    the calling test when $PGBDR_PEERS is absent."""
    if not os.path.isdir(PEERS_DIR):
        pytest.skip(f"real peers skipped: PGBDR_PEERS ({PEERS_DIR}) is not a folder")
    r = subprocess.run(["bash", BUILD_SH, peer], capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        pytest.fail(f"building {peer} failed:\n{r.stderr[-3000:]}", pytrace=False)
    name, path = r.stdout.strip().splitlines()[-1].split(" ", 1)
    assert name == peer, r.stdout
    return path
