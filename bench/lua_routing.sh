#!/usr/bin/env bash
# What a routing decision costs HAProxy, four ways in the same run:
#   none       no routing: the same frontend with no decision at all;
#   lua        haproxy-examples/pgbdr.lua as lua-tcp.cfg uses it: a map
#              lookup per request (str(write_node),map(...)) in the map
#              the script's task keeps from the agent's /compact status;
#   lua-fetch  the same answer from the Lua sample fetch
#              lua.pgbdr_write_node: one Lua call per request;
#   spoe       filter spoe to pgbdr-agent: one NOTIFY/ACK round trip per
#              request (haproxy-examples/pgbdr-spoe.conf, scope [pgbdr]);
#   spoe-ref   filter spoe to HAProxy's reference C SPOA (spoa-example,
#              built from ../shared/peers), the same round trip to the
#              simplest agent there is.
# wrk drives each frontend in turn, rounds alternating; every frontend
# answers "http-request return" with the decision in a header, so the
# figures are HAProxy's cost of getting the decision and nothing else.
# Prints req/s and ratios against "none", and records them in
# bench/RESULTS.md under "Lua routing".
#
# Usage: bench/lua_routing.sh [seconds per round (10)] [rounds (3)]
# Environment: PGBDR_AGENT (default build/agent/pgbdr-agent),
#              PGBDR_PEERS (default ../shared/peers),
#              SPOA_CACHE (default /var/cache/pgbdr-peers),
#              WRK_THREADS (2), WRK_CONNECTIONS (64)
#
# Needs haproxy (with Lua), wrk, curl, make, libevent-dev and python3.
# No PostgreSQL: the agent watches a node that refuses connections, which
# changes the answer (no write node), not the cost of giving it. The
# map lookup then finds no entry, as it would in a lookup miss anyway.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
AGENT=${PGBDR_AGENT:-$ROOT/build/agent/pgbdr-agent}
PEERS=${PGBDR_PEERS:-$ROOT/../shared/peers}
CACHE=${SPOA_CACHE:-/var/cache/pgbdr-peers}
DURATION=${1:-10}
ROUNDS=${2:-3}
THREADS=${WRK_THREADS:-2}
CONNS=${WRK_CONNECTIONS:-64}
RESULTS=$ROOT/bench/RESULTS.md

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# The reference SPOA, built once per tarball into the cache.
tarball=$PEERS/spoa-example.tar.gz
if [ ! -f "$tarball" ]; then
	echo "no $tarball: the reference SPOA cannot be built; set PGBDR_PEERS" >&2
	exit 1
fi
sum=$(sha256sum "$tarball" | cut -c1-12)
SPOA_DIR=$CACHE/spoa-example-$sum
if [ ! -x "$SPOA_DIR/spoa-example/spoa" ]; then
	mkdir -p "$SPOA_DIR"
	tar -xzf "$tarball" -C "$SPOA_DIR"
	make -C "$SPOA_DIR/spoa-example" CFLAGS="-O2 -Wall -pthread" >/dev/null
fi
SPOA=$SPOA_DIR/spoa-example/spoa

TMP=$(mktemp -d /tmp/pgbdr-bench-lua-XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT

HTTP_PORT=$(free_port)
SPOE_PORT=$(free_port)
REF_PORT=$(free_port)
DEAD_PORT=$(free_port)
declare -A PORT
for f in none lua lua-fetch spoe spoe-ref; do PORT[$f]=$(free_port); done

cat >"$TMP/agent.ini" <<EOF
[agent]
http_listen = 127.0.0.1:$HTTP_PORT
spoe_listen = 127.0.0.1:$SPOE_PORT
allow_root = yes
log_level = warning
[node.node1]
dsn = host=127.0.0.1 port=$DEAD_PORT dbname=app user=pgbdr_monitor connect_timeout=1
flavor = plain
EOF
"$AGENT" -c "$TMP/agent.ini" >"$TMP/agent.log" 2>&1 &
PIDS+=($!)

"$SPOA" -p "$REF_PORT" -n 1 -c pipelining >"$TMP/spoa.log" 2>&1 &
PIDS+=($!)

: >"$TMP/pgbdr.map"

cat >"$TMP/ref-spoe.conf" <<EOF
[ref]
spoe-agent ref-agent
    messages check-client-ip
    option var-prefix ref
    option set-on-error error
    timeout hello 2s
    timeout idle 4s
    timeout processing 1s
    use-backend ref_agents
spoe-message check-client-ip
    args ip=src
    event on-frontend-http-request
EOF

cat >"$TMP/haproxy.cfg" <<EOF
global
    log stderr format short local0 warning
    stats socket $TMP/stats.sock mode 600 level admin
    setenv PGBDR_LUA_AGENTS 127.0.0.1:$HTTP_PORT
    setenv PGBDR_LUA_INTERVAL 500
    setenv PGBDR_LUA_MAX_AGE 3000
    setenv PGBDR_LUA_MAP $TMP/pgbdr.map
    lua-load $ROOT/haproxy-examples/pgbdr.lua

defaults
    log global
    mode http
    timeout connect 3s
    timeout client 30s
    timeout server 30s

frontend none
    bind 127.0.0.1:${PORT[none]}
    http-request return status 200 content-type text/plain string ok hdr x-write-node "w="

frontend lua
    bind 127.0.0.1:${PORT[lua]}
    http-request return status 200 content-type text/plain string ok hdr x-write-node "w=%[str(write_node),map($TMP/pgbdr.map)]"

frontend lua-fetch
    bind 127.0.0.1:${PORT[lua-fetch]}
    http-request return status 200 content-type text/plain string ok hdr x-write-node "w=%[lua.pgbdr_write_node]"

frontend spoe
    bind 127.0.0.1:${PORT[spoe]}
    filter spoe engine pgbdr config $ROOT/haproxy-examples/pgbdr-spoe.conf
    http-request return status 200 content-type text/plain string ok hdr x-write-node "w=%[var(txn.pgbdr.write_node)]"

frontend spoe-ref
    bind 127.0.0.1:${PORT[spoe-ref]}
    filter spoe engine ref config $TMP/ref-spoe.conf
    http-request return status 200 content-type text/plain string ok hdr x-write-node "w=%[var(sess.ref.ip_score)]"

backend pgbdr_agents
    mode tcp
    timeout server 30s
    server agent1 127.0.0.1:$SPOE_PORT

backend ref_agents
    mode tcp
    timeout server 30s
    server ref1 127.0.0.1:$REF_PORT
EOF
haproxy -f "$TMP/haproxy.cfg" -db >"$TMP/haproxy.log" 2>&1 &
HAPROXY_PID=$!
PIDS+=($HAPROXY_PID)

# Every decision must really be made: the Lua copy must be fresh (its
# log says so), and each SPOE agent must have answered (its variable set).
wait_header() {
	local port=$1 pattern=$2
	for _ in $(seq 100); do
		if curl -fsi "http://127.0.0.1:$port/" 2>/dev/null | grep -qi "$pattern"; then
			return 0
		fi
		sleep 0.1
	done
	echo "frontend on port $port never answered with $pattern; logs:" >&2
	cat "$TMP/agent.log" "$TMP/spoa.log" "$TMP/haproxy.log" >&2
	exit 1
}
for _ in $(seq 100); do
	grep -q "pgbdr: status from agent" "$TMP/haproxy.log" && break
	sleep 0.1
done
grep -q "pgbdr: status from agent" "$TMP/haproxy.log" || {
	echo "pgbdr.lua never got a status; logs:" >&2
	cat "$TMP/agent.log" "$TMP/haproxy.log" >&2
	exit 1
}
wait_header "${PORT[none]}" '^x-write-node: w='
wait_header "${PORT[lua]}" '^x-write-node: w='
wait_header "${PORT[lua-fetch]}" '^x-write-node: w='
# no write node (the node is down), but the agent answered: no error var
wait_header "${PORT[spoe]}" '^x-write-node: w='
wait_header "${PORT[spoe-ref]}" '^x-write-node: w=[0-9]'

# HAProxy's CPU time so far, in clock ticks (utime + stime)
haproxy_ticks() {
	awk '{ print $14 + $15 }' "/proc/$HAPROXY_PID/stat"
}

# "req/s cpu-us-per-request": wrk's rate, and HAProxy's CPU time per
# request over the run; fails on any error or non-2xx reply
run_wrk() {
	local port=$1 secs=$2 out t0 t1
	t0=$(haproxy_ticks)
	out=$(wrk -t"$THREADS" -c"$CONNS" -d"${secs}s" "http://127.0.0.1:$port/")
	t1=$(haproxy_ticks)
	if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then
		echo "wrk reported errors on port $port:" >&2
		echo "$out" >&2
		exit 1
	fi
	awk -v ticks=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" '
		/ requests in / { n = $1 }
		/^Requests\/sec:/ { rate = $2 }
		END { printf "%s %.2f\n", rate, ticks / hz * 1e6 / n }' <<<"$out"
}

FRONTENDS=(none lua lua-fetch spoe spoe-ref)
# One line per round: "f1 req/s cpu-us f2 req/s cpu-us ...". The ratios are taken
# within each round (the frontends ran back to back), and the median
# over rounds is reported: other tenants' load moves whole rounds.
for f in "${FRONTENDS[@]}"; do run_wrk "${PORT[$f]}" 2 >/dev/null; done
: >"$TMP/rounds"
for r in $(seq "$ROUNDS"); do
	line=""
	for f in "${FRONTENDS[@]}"; do
		line="$line $f $(run_wrk "${PORT[$f]}" "$DURATION")"
	done
	echo "round $r (frontend req/s HAProxy-cpu-µs/request):$line"
	echo "$line" >>"$TMP/rounds"
done

# per frontend: name, median req/s, median ratio, per-round ratios,
# median HAProxy CPU µs per request, its ratio to "none"
python3 - "$TMP/rounds" >"$TMP/summary" <<'PY'
import statistics, sys
rounds = []
for line in open(sys.argv[1]):
    w = line.split()
    rounds.append({w[i]: (float(w[i + 1]), float(w[i + 2])) for i in range(0, len(w), 3)})
cpu_none = statistics.median(r["none"][1] for r in rounds)
for f in rounds[0]:
    ratios = [r[f][0] / r["none"][0] for r in rounds]
    cpu = statistics.median(r[f][1] for r in rounds)
    print(f, f"{round(statistics.median(r[f][0] for r in rounds)):,}",
          f"{statistics.median(ratios):.2f}", "/".join(f"{x:.2f}" for x in ratios),
          f"{cpu:.1f}", f"{cpu_none / cpu:.2f}")
PY
col() { awk -v f="$1" -v c="$2" '$1 == f { print $c }' "$TMP/summary"; }
lua_ratio=$(col lua 3)
verdict=$(python3 -c "print('PASS' if $lua_ratio >= 0.9 else 'FAIL')")
for f in "${FRONTENDS[@]}"; do
	printf '%-9s %10s req/s  ratio %s (rounds %s)  HAProxy %s µs CPU/request (ratio %s)\n' \
		"$f" "$(col "$f" 2)" "$(col "$f" 3)" "$(col "$f" 4)" "$(col "$f" 5)" "$(col "$f" 6)"
done
echo "Lua routing ratio $lua_ratio (target >= 0.9): $verdict"
load=$(cut -d' ' -f1-3 /proc/loadavg)

section=$(cat <<EOF
## Lua routing

\`bench/lua_routing.sh $DURATION $ROUNDS\`, $(date -u +%Y-%m-%d): wrk -t$THREADS -c$CONNS (keep-alive), ${DURATION}s per
round, $ROUNDS rounds, the five frontends in turn in each round, one HAProxy
($(haproxy -v | awk 'NR==1 { print $3 }'), Lua $(haproxy -vv | awk '/Built with Lua version/ { print $NF }'), default threads) on $(nproc) CPU(s) shared by wrk, HAProxy and the
agents; load average at the end $load. Every frontend answers with
\`http-request return\`, the decision in a header: the figures are the cost
of getting the decision. Ratios are taken within each round and the median
over rounds is reported. The other tenants' load moves throughput a lot;
HAProxy's own CPU time per request (utime + stime from /proc over each wrk
run) moves much less, so it is shown too (the SPOE agents' CPU is not in
it). The agent's only node refuses connections, so the
map has no \`write_node\` entry: each lookup is a miss, of the same cost as
a hit.

| frontend | decision per request | req/s (median) | vs none (median) | vs none, each round | HAProxy CPU µs / request | throughput per CPU vs none |
|---|---|---:|---:|---|---:|---:|
| none | nothing | $(col none 2) | 1.00 | | $(col none 5) | 1.00 |
| lua | map lookup \`str(write_node),map(pgbdr.map)\`, the map pgbdr.lua keeps (polled every 500 ms), as lua-tcp.cfg does | $(col lua 2) | **$(col lua 3)** | $(col lua 4) | $(col lua 5) | $(col lua 6) |
| lua-fetch | the Lua sample fetch \`lua.pgbdr_write_node\`: one Lua call per request | $(col lua-fetch 2) | $(col lua-fetch 3) | $(col lua-fetch 4) | $(col lua-fetch 5) | $(col lua-fetch 6) |
| spoe | \`filter spoe\` to pgbdr-agent, one NOTIFY/ACK | $(col spoe 2) | $(col spoe 3) | $(col spoe 4) | $(col spoe 5) | $(col spoe 6) |
| spoe-ref | \`filter spoe\` to the reference SPOA (spoa-example, pipelining) | $(col spoe-ref 2) | $(col spoe-ref 3) | $(col spoe-ref 4) | $(col spoe-ref 5) | $(col spoe-ref 6) |

Target: Lua routing >= 0.9x no routing: **$verdict** ($lua_ratio), judged on the
median throughput ratio. When the machine is busy the per-round ratios
scatter widely (see the column) and the CPU per request is the steadier
measure of what the decision costs HAProxy.
EOF
)

python3 - "$RESULTS" "$section" <<'EOF'
import re, sys
path, section = sys.argv[1], sys.argv[2].rstrip() + "\n"
try:
    text = open(path).read()
except FileNotFoundError:
    text = "# Benchmark results\n"
pattern = re.compile(r"^## Lua routing\n.*?(?=^## |\Z)", re.S | re.M)
if pattern.search(text):
    text = pattern.sub(lambda m: section + "\n", text, count=1)
else:
    text = text.rstrip() + "\n\n" + section
open(path, "w").write(text.rstrip() + "\n")
EOF
echo "recorded in $RESULTS"
