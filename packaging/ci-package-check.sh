#!/usr/bin/env bash
# Build the Debian package from a clean copy of the source tree, lint it,
# install it, check what it installed, and purge it again. For CI (as
# root, Debian 12); exits non-zero on the first class of failure found
# and prints every check it made.
#
#   bash packaging/ci-package-check.sh [--keep]    (--keep: leave it installed)
#
# It never replaces or removes a pgbdr-agent package it did not install:
# when one is already installed (in any state but "not installed"), it
# checks the contents of the .deb it built, unpacked in a temporary
# directory, and leaves the installed package as it found it.
#
# The source tree itself is not touched: the build runs in a temporary
# copy (tracked and new files, not build directories), so no obj-*
# directory or debian/ output is left behind.
set -uo pipefail

cd "$(dirname "$0")/.."
top=$(pwd)
keep=false
[ "${1:-}" = "--keep" ] && keep=true
export DEBIAN_FRONTEND=noninteractive

PACKAGES=(
	build-essential dpkg-dev debhelper fakeroot lintian
	meson ninja-build pkg-config
	libpq-dev libevent-dev libcmocka-dev libsystemd-dev
	systemd man-db adduser
)

failures=0
checks=0
pass() { checks=$((checks + 1)); echo "ok   - $*"; }
fail() { checks=$((checks + 1)); failures=$((failures + 1)); echo "FAIL - $*"; }
check() {
	# check "description" command...
	local what=$1
	shift
	if "$@" >/dev/null 2>&1; then pass "$what"; else fail "$what"; fi
}
finish() {
	echo "package check: $checks checks, $failures failed"
	[ "$failures" -eq 0 ]
	exit $?
}

if [ "$(id -u)" -ne 0 ]; then
	echo "run as root (installs build dependencies and the package)"
	exit 2
fi

missing=()
for p in "${PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "=== installing ${missing[*]}"
	{ apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; } \
		>/tmp/pgbdr-package-apt.log 2>&1 ||
		{ tail -n 30 /tmp/pgbdr-package-apt.log; fail "install build dependencies"; finish; }
fi

work=$(mktemp -d /tmp/pgbdr-package-XXXXXX)
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
src="$work/pgbdr-agent"
mkdir -p "$src"

# --- a clean copy of the source --------------------------------------
if git -C "$top" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	git -C "$top" ls-files -z --cached --others --exclude-standard |
		grep -zvE '^(obj-[^/]*|build[^/]*|debian/(\.debhelper|pgbdr-agent|tmp))/' |
		(cd "$top" && xargs -0 cp --parents -t "$src" 2>/dev/null)
	# deleted but still tracked files make cp complain; that is fine
else
	tar -C "$top" --exclude='./.git' --exclude='./build*' --exclude='./obj-*' \
		--exclude='./debian/.debhelper' --exclude='./debian/pgbdr-agent' -cf - . |
		tar -C "$src" -xf -
fi
check "source copied (debian/control present)" test -f "$src/debian/control"
[ -f "$src/debian/control" ] || finish

# --- build -------------------------------------------------------------
echo "=== dpkg-buildpackage -us -uc -b"
(cd "$src" && dpkg-checkbuilddeps) || { fail "build dependencies satisfied"; finish; }
if (cd "$src" && dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1; then
	if [[ " ${DEB_BUILD_OPTIONS:-} " == *" nocheck "* ]]; then
		pass "dpkg-buildpackage -us -uc -b (nocheck: unit tests skipped)"
	else
		pass "dpkg-buildpackage -us -uc -b (unit tests passed)"
	fi
else
	tail -n 40 "$work/build.log"
	echo "--- failures in the build log:"
	grep -E '^\[  (ERROR|FAILED) +\]|^\[   LINE   \]|error:' "$work/build.log" | head -n 30
	fail "dpkg-buildpackage -us -uc -b"
	finish
fi
grep -E '^(Ok|Fail|Expected Fail|Skipped|Timeout):' "$work/build.log" | sed 's/^/     /'
deb=$(ls "$work"/pgbdr-agent_*.deb 2>/dev/null | grep -v dbgsym | head -n 1)
check "a .deb was built ($(basename "${deb:-none}"))" test -n "$deb"
[ -n "$deb" ] || finish
version=$(dpkg-deb -f "$deb" Version)
upstream=$(sed -n "s/^ *version : '\([^']*\)'.*/\1/p" "$top/meson.build" | head -n 1)
check "package version $version carries meson's version $upstream" \
	test "${version%%-*}" = "$upstream"

# --- lint --------------------------------------------------------------
echo "=== lintian"
lintian --fail-on error --display-info "$deb" >"$work/lintian.log" 2>&1
lintian_rc=$?
sed 's/^/     /' "$work/lintian.log"
if [ $lintian_rc -eq 0 ] && ! grep -q '^E: ' "$work/lintian.log"; then
	pass "lintian: no errors ($(grep -c '^W: ' "$work/lintian.log") warnings)"
else
	fail "lintian: errors"
fi

# --- an installed package is not ours to touch -------------------------
status=$(dpkg-query -W -f='${db:Status-Abbrev}' pgbdr-agent 2>/dev/null)
if [ -n "$status" ] && [ "${status:1:1}" != "n" ]; then
	echo "=== pgbdr-agent is already installed ($status $(dpkg-query -W -f='${Version}' pgbdr-agent)):"
	echo "    checking the .deb unpacked; the installed package stays as it is"
	unpacked="$work/unpacked"
	dpkg-deb -x "$deb" "$unpacked"
	check "unpacked: pgbdr-agent --version prints 'pgbdr-agent $upstream'" \
		sh -c "test \"\$('$unpacked/usr/sbin/pgbdr-agent' --version 2>&1)\" = 'pgbdr-agent $upstream'"
	for f in usr/sbin/pgbdr-agent lib/systemd/system/pgbdr-agent.service \
		etc/pgbdr-agent/pgbdr-agent.ini usr/lib/sysusers.d/pgbdr-agent.conf \
		usr/lib/tmpfiles.d/pgbdr-agent.conf \
		usr/share/man/man8/pgbdr-agent.8.gz usr/share/man/man5/pgbdr-agent.ini.5.gz \
		usr/share/pgbdr-agent/grants/plain.sql usr/share/doc/pgbdr-agent/copyright; do
		check "in the .deb: /$f" test -s "$unpacked/$f"
	done
	check "the .deb's unit runs /usr/sbin/pgbdr-agent as pgbdr-agent" \
		sh -c "grep -qx 'ExecStart=/usr/sbin/pgbdr-agent -c /etc/pgbdr-agent/pgbdr-agent.ini' \
		       '$unpacked/lib/systemd/system/pgbdr-agent.service' &&
		       grep -qx 'User=pgbdr-agent' '$unpacked/lib/systemd/system/pgbdr-agent.service'"
	after=$(dpkg-query -W -f='${db:Status-Abbrev}' pgbdr-agent 2>/dev/null)
	check "the installed pgbdr-agent is untouched ($after)" test "$after" = "$status"
	finish
fi

# --- install -----------------------------------------------------------
echo "=== install"
if apt-get install -y -q --no-install-recommends "$deb" >"$work/install.log" 2>&1; then
	pass "apt-get install ./$(basename "$deb")"
else
	tail -n 30 "$work/install.log"
	fail "install the package"
	finish
fi
unit=/lib/systemd/system/pgbdr-agent.service
conf=/etc/pgbdr-agent/pgbdr-agent.ini
out=$(/usr/sbin/pgbdr-agent --version 2>&1)
check "pgbdr-agent --version prints 'pgbdr-agent $upstream' (got '$out')" \
	test "$out" = "pgbdr-agent $upstream"
for f in /usr/sbin/pgbdr-agent "$unit" "$conf" \
	/usr/share/man/man8/pgbdr-agent.8.gz /usr/share/man/man5/pgbdr-agent.ini.5.gz \
	/usr/share/pgbdr-agent/grants/plain.sql /usr/share/pgbdr-agent/grants/physical.sql \
	/usr/share/doc/pgbdr-agent/copyright /usr/share/doc/pgbdr-agent/examples/httpchk.cfg \
	/usr/share/doc/pgbdr-agent/examples/pgsqlchk \
	/usr/lib/sysusers.d/pgbdr-agent.conf /usr/lib/tmpfiles.d/pgbdr-agent.conf; do
	check "installed: $f" test -s "$f"
done
check "$conf is a conffile" \
	sh -c "dpkg-query -W -f='\${Conffiles}' pgbdr-agent | grep -q ' $conf '"
check "user pgbdr-agent exists" getent passwd pgbdr-agent
check "group pgbdr-agent exists" getent group pgbdr-agent
home=$(getent passwd pgbdr-agent | cut -d: -f6)
shell=$(getent passwd pgbdr-agent | cut -d: -f7)
uid=$(id -u pgbdr-agent 2>/dev/null || echo 0)
check "pgbdr-agent is a system user (uid $uid < 1000)" test "$uid" -gt 0 -a "$uid" -lt 1000
check "pgbdr-agent's home is /var/lib/pgbdr-agent (got $home), owned by it" \
	test "$home" = /var/lib/pgbdr-agent -a "$(stat -c %U "$home" 2>/dev/null)" = pgbdr-agent
check "pgbdr-agent cannot log in (shell $shell)" \
	sh -c "case '$shell' in */nologin|*/false) exit 0;; *) exit 1;; esac"
perm=$(stat -c '%U:%G %a' "$conf")
check "$conf is root:pgbdr-agent 640 (got $perm)" test "$perm" = "root:pgbdr-agent 640"
check "the pgbdr-agent user can validate the installed config" \
	runuser -u pgbdr-agent -- /usr/sbin/pgbdr-agent -c "$conf" --check-config
# No PostgreSQL needs to answer: --once prints the table either way.
once=$(cd / && timeout 20 runuser -u pgbdr-agent -- /usr/sbin/pgbdr-agent -c "$conf" --once 2>&1)
rc=$?
check "pgbdr-agent --once runs as pgbdr-agent (exit $rc, 0 or 1)" test $rc -le 1
check "pgbdr-agent --once prints the node table" grep -q '^NODE' <<<"$once"
check "man finds pgbdr-agent(8)" man -w 8 pgbdr-agent
check "man finds pgbdr-agent.ini(5)" man -w 5 pgbdr-agent.ini
for page in /usr/share/man/man8/pgbdr-agent.8.gz /usr/share/man/man5/pgbdr-agent.ini.5.gz; do
	w=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null)
	check "man --warnings: $(basename "$page") renders cleanly${w:+ ($w)}" test -z "$w"
done
verify=$(systemd-analyze verify "$unit" 2>&1)
vrc=$?
[ -n "$verify" ] && sed 's/^/     /' <<<"$verify"
check "systemd-analyze verify $unit: no error" test $vrc -eq 0 -a -z "$verify"
check "unit: Type=notify, User=pgbdr-agent, WatchdogSec, ExecReload" \
	sh -c "grep -qx 'Type=notify' $unit && grep -qx 'User=pgbdr-agent' $unit &&
	       grep -q '^WatchdogSec=' $unit && grep -q '^ExecReload=/bin/kill -HUP' $unit"
check "systemd-analyze security: exposure OK or better" \
	sh -c "systemd-analyze security --offline=yes $unit 2>/dev/null |
	       grep -qE 'Overall exposure level.*(OK|SAFE)'"

# --- remove ------------------------------------------------------------
if ! $keep; then
	echo "=== purge"
	check "dpkg --purge pgbdr-agent" dpkg --purge pgbdr-agent
	check "purged: binary gone" test ! -e /usr/sbin/pgbdr-agent
	check "purged: $conf gone" test ! -e "$conf"
	check "purged: /var/lib/pgbdr-agent gone" test ! -e /var/lib/pgbdr-agent
fi
finish
