#!/usr/bin/env bash
# The whole benchmark suite in one command (about 20 minutes; --quick
# about 8):
#
#   bench/run.sh [--quick]
#
# Installs what it needs with apt-get (xinetd, haproxy, wrk, PostgreSQL 15,
# psycopg2, the build tools), builds the agent (build-bench/, a meson
# debugoptimized build like the installed one) and bench/loadgen.c, then runs
# bench/bench.py: the classic xinetd checker as baseline, direct load with
# loadgen, HAProxy in the loop (bench/spoe_ratio.sh and 1000 servers checked
# every 100 ms), PostgreSQL load, memory and CPU, failover time
# (bench/failover.py) and fleet scale (bench/fleet.py). It rewrites
# bench/RESULTS.md and prints PASS or FAIL per target; exit status 1 if a
# target fails, 2 on an error.
#
# Environment: PGBDR_AGENT=path (use this agent binary instead of building),
#              BENCH_QUICK=1 (the same as --quick).
# Must run as root (PostgreSQL runs as the postgres user, xinetd drops to nobody).
set -euo pipefail

# --quick: a smoke run (shorter windows, 3 faults per type, fleets of 100
# and 300 nodes), labelled as such in RESULTS.md
for arg in "$@"; do
	case $arg in
		--quick) export BENCH_QUICK=1 ;;
		*) echo "usage: bench/run.sh [--quick]" >&2; exit 2 ;;
	esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

if [ "$(id -u)" != 0 ]; then
	echo "bench/run.sh: run as root" >&2
	exit 2
fi

pkgs=()
need_cmd() { command -v "$1" >/dev/null 2>&1 || pkgs+=("$2"); }
need_cmd xinetd xinetd
need_cmd haproxy haproxy
need_cmd wrk wrk
need_cmd curl curl
need_cmd cc gcc
need_cmd meson meson
need_cmd ninja ninja-build
need_cmd pkg-config pkg-config
[ -x /usr/lib/postgresql/15/bin/postgres ] || pkgs+=(postgresql-15)
/usr/bin/python3 -c 'import psycopg2' 2>/dev/null || pkgs+=(python3-psycopg2)
for dev in libpq libevent inih libsystemd; do
	pkg-config --exists "$dev" 2>/dev/null || case $dev in
		libpq) pkgs+=(libpq-dev) ;;
		libevent) pkgs+=(libevent-dev) ;;
		inih) pkgs+=(libinih-dev) ;;
		libsystemd) pkgs+=(libsystemd-dev) ;;
	esac
done
if [ ${#pkgs[@]} -gt 0 ]; then
	echo "== apt-get install ${pkgs[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi

BUILD=$ROOT/build-bench
if [ -z "${PGBDR_AGENT:-}" ]; then
	echo "== building the agent in build-bench/"
	[ -f "$BUILD/build.ninja" ] || meson setup "$BUILD" -Dtests=false >/dev/null
	meson compile -C "$BUILD" >/dev/null
	export PGBDR_AGENT=$BUILD/agent/pgbdr-agent
fi
mkdir -p "$BUILD"
echo "== building bench/loadgen.c and bench/nullserver.c"
cc -O2 -Wall -Wextra -o "$BUILD/loadgen" bench/loadgen.c
cc -O2 -Wall -Wextra -o "$BUILD/nullserver" bench/nullserver.c
export LOADGEN=$BUILD/loadgen

exec /usr/bin/python3 "$ROOT/bench/bench.py"
