#!/usr/bin/env bash
# What the SPOE filter costs HAProxy: wrk against the spoe-http.cfg
# frontend with "filter spoe" (one NOTIFY/ACK round trip to pgbdr-agent
# per request) and against the identical frontend without the filter,
# in the same run, alternating. Prints req/s for each and their ratio,
# and records them in bench/RESULTS.md under "SPOE filter ratio".
#
# Usage: bench/spoe_ratio.sh [seconds per round (10)] [rounds (3)]
# Environment: PGBDR_AGENT (default build/agent/pgbdr-agent),
#              WRK_THREADS (2), WRK_CONNECTIONS (64)
#
# Needs haproxy, wrk, curl and python3. No PostgreSQL: the agent watches
# a node that refuses connections, which only changes the answer (down,
# with a reason), not the cost of giving it.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
AGENT=${PGBDR_AGENT:-$ROOT/build/agent/pgbdr-agent}
DURATION=${1:-10}
ROUNDS=${2:-3}
THREADS=${WRK_THREADS:-2}
CONNS=${WRK_CONNECTIONS:-64}
RESULTS=$ROOT/bench/RESULTS.md

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

TMP=$(mktemp -d /tmp/pgbdr-bench-XXXXXX)
AGENT_PID=
HAPROXY_PID=
cleanup() {
	[ -n "$HAPROXY_PID" ] && kill "$HAPROXY_PID" 2>/dev/null || true
	[ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT

HTTP_PORT=$(free_port)
SPOE_PORT=$(free_port)
DEAD_PORT=$(free_port)
FILTER_PORT=$(free_port)
NOFILTER_PORT=$(free_port)
FRAG_PORT=$(free_port)

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
AGENT_PID=$!

PGBDR_SPOE_CONF=$ROOT/haproxy-examples/pgbdr-spoe.conf \
PGBDR_SPOE_AGENT=127.0.0.1:$SPOE_PORT \
PGBDR_STATS_SOCKET=$TMP/stats.sock \
PGBDR_HTTP_LISTEN=127.0.0.1:$FILTER_PORT \
PGBDR_HTTP_NOFILTER_LISTEN=127.0.0.1:$NOFILTER_PORT \
PGBDR_HTTP_FRAG_LISTEN=127.0.0.1:$FRAG_PORT \
	haproxy -f "$ROOT/haproxy-examples/spoe-http.cfg" -db >"$TMP/haproxy.log" 2>&1 &
HAPROXY_PID=$!

# The filter must really answer: wait for the agent's variables.
for _ in $(seq 100); do
	if curl -fsi "http://127.0.0.1:$FILTER_PORT/" 2>/dev/null | grep -qi '^x-pgbdr-state: down'; then
		break
	fi
	sleep 0.1
done
curl -fsi "http://127.0.0.1:$FILTER_PORT/" | grep -qi '^x-pgbdr-state: down' || {
	echo "SPOE filter does not answer; logs:" >&2
	cat "$TMP/agent.log" "$TMP/haproxy.log" >&2
	exit 1
}

acks() {
	curl -fs "http://127.0.0.1:$HTTP_PORT/metrics" |
		awk '/^pgbdr_spop_frames_sent_total\{type="ack"\}/ { print $2 }'
}

# wrk's req/s, failing on any error or non-2xx reply
run_wrk() {
	local port=$1 secs=$2 out
	out=$(wrk -t"$THREADS" -c"$CONNS" -d"${secs}s" "http://127.0.0.1:$port/")
	if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then
		echo "wrk reported errors on port $port:" >&2
		echo "$out" >&2
		exit 1
	fi
	awk '/^Requests\/sec:/ { print $2 }' <<<"$out"
}

run_wrk "$NOFILTER_PORT" 2 >/dev/null
run_wrk "$FILTER_PORT" 2 >/dev/null

with_sum=0
without_sum=0
acks_before=$(acks)
for r in $(seq "$ROUNDS"); do
	without=$(run_wrk "$NOFILTER_PORT" "$DURATION")
	with=$(run_wrk "$FILTER_PORT" "$DURATION")
	echo "round $r: without filter $without req/s, with filter $with req/s"
	without_sum=$(python3 -c "print($without_sum + $without)")
	with_sum=$(python3 -c "print($with_sum + $with)")
done
acks_after=$(acks)

without_avg=$(python3 -c "print(round($without_sum / $ROUNDS))")
with_avg=$(python3 -c "print(round($with_sum / $ROUNDS))")
ratio=$(python3 -c "print(f'{$with_sum / $without_sum:.2f}')")
expected_acks=$(python3 -c "print(round($with_sum * $DURATION))")
acked=$(python3 -c "print(round($acks_after - $acks_before))")
echo "without filter: $without_avg req/s"
echo "with filter:    $with_avg req/s"
echo "ratio:          $ratio (target >= 0.5)"
echo "ACKs sent by the agent during the filtered runs: $acked (wrk counted about $expected_acks requests)"

section=$(cat <<EOF
## SPOE filter ratio

\`bench/spoe_ratio.sh $DURATION $ROUNDS\`, $(date -u +%Y-%m-%d): wrk -t$THREADS -c$CONNS, ${DURATION}s per round,
$ROUNDS rounds alternating, against haproxy-examples/spoe-http.cfg (HAProxy
$(haproxy -v | awk 'NR==1 { print $3 }')) on $(nproc) CPU(s) shared by wrk, HAProxy and the agent.

| frontend | req/s |
|---|---|
| pgbdr_http_nofilter (no filter) | $without_avg |
| pgbdr_http (filter spoe, one NOTIFY/ACK per request) | $with_avg |
| **ratio** | **$ratio** (target >= 0.5) |

The agent sent $acked ACKs during the filtered rounds (one per request).
EOF
)

python3 - "$RESULTS" "$section" <<'EOF'
import re, sys
path, section = sys.argv[1], sys.argv[2].rstrip() + "\n"
try:
    text = open(path).read()
except FileNotFoundError:
    text = "# Benchmark results\n"
pattern = re.compile(r"^## SPOE filter ratio\n.*?(?=^## |\Z)", re.S | re.M)
m = pattern.search(text)
if m:
    # keep bench/spoe_versions.sh's subsection
    sub = re.search(r"^### SPOE filter across HAProxy versions\n.*", m.group(0), re.S | re.M)
    if sub:
        section = section + "\n" + sub.group(0).rstrip() + "\n"
    text = pattern.sub(lambda m: section + "\n", text, count=1)
else:
    text = text.rstrip() + "\n\n" + section
open(path, "w").write(text.rstrip() + "\n")
EOF
echo "recorded in $RESULTS"
