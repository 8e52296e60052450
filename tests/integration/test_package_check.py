"""packaging/ci-package-check.sh (which .ci/run runs) on a host where a
pgbdr-agent package is already installed: the script still builds and
checks its .deb, and the installed package stays installed, same version,
same files. The "host" is a private mount namespace with writable
overlays over /usr, /etc and /var, so nothing here touches the real one."""

import os
import subprocess

import pytest

from fault_tools import binary_uses_asan
from harness import ROOT, CAPTURED

pytestmark = pytest.mark.slow

PREINSTALLED = "0.0.1~preinstalled"

SCRIPT = r"""
set -e
for d in usr etc var; do
    mkdir -p "$T/$d-up" "$T/$d-work"
    mount -t overlay overlay -o "lowerdir=/$d,upperdir=$T/$d-up,workdir=$T/$d-work" "/$d"
done
# A package the host already has serves as the admin's own; else a
# stand-in without maintainer scripts (nothing outside the overlays runs).
if ! dpkg-query -W -f='${db:Status-Abbrev}' pgbdr-agent 2>/dev/null | grep -q '^.[^n]'; then
    dpkg -i "$T/pre.deb" >/dev/null
    echo "stand-in: yes"
fi
echo "before: $(dpkg-query -W -f='${db:Status-Abbrev} ${Version}' pgbdr-agent)"
set +e
DEB_BUILD_OPTIONS=nocheck bash "$SRC/packaging/ci-package-check.sh"
echo "check: rc $?"
echo "after: $(dpkg-query -W -f='${db:Status-Abbrev} ${Version}' pgbdr-agent)"
echo "marker: $(cat /usr/share/pgbdr-agent-preinstalled/marker 2>&1)"
"""


def build_preinstalled(tmp):
    """A minimal package named pgbdr-agent, standing for the admin's own."""
    root = os.path.join(tmp, "pre")
    os.makedirs(os.path.join(root, "DEBIAN"))
    os.makedirs(os.path.join(root, "usr/share/pgbdr-agent-preinstalled"))
    with open(os.path.join(root, "usr/share/pgbdr-agent-preinstalled/marker"), "w") as f:
        f.write("installed by the admin\n")
    with open(os.path.join(root, "DEBIAN/control"), "w") as f:
        f.write(f"Package: pgbdr-agent\nVersion: {PREINSTALLED}\nArchitecture: all\n"
                "Maintainer: test <test@example.invalid>\nDescription: preinstalled stand-in\n")
    deb = os.path.join(tmp, "pre.deb")
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", root, deb], check=True,
                   capture_output=True)
    return deb


def test_package_check_leaves_installed_package(registry):
    if binary_uses_asan():
        pytest.skip("the script builds its own .deb from the source (dpkg-buildpackage), not from "
                    "the sanitizer build under test; the release suite runs it")
    tmp = registry.mkdtemp("pkgcheck")
    build_preinstalled(tmp)
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c", SCRIPT],
                       env=dict(os.environ, T=tmp, SRC=ROOT), capture_output=True, text=True,
                       timeout=1800)
    out = r.stdout + r.stderr
    CAPTURED.text("package check", out)
    assert r.returncode == 0, out
    fields = dict(l.split(": ", 1) for l in r.stdout.splitlines()
                  if l.split(": ", 1)[0] in ("stand-in", "before", "check", "after", "marker"))
    assert fields["before"].startswith("ii "), out
    assert fields["after"] == fields["before"], out
    if "stand-in" in fields:
        assert fields["before"] == f"ii  {PREINSTALLED}", out
        assert fields["marker"] == "installed by the admin", out
    assert "already installed" in out, out
    assert fields["check"] == "rc 0", out[-4000:]
