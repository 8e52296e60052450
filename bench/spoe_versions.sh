#!/usr/bin/env bash
# The SPOE filter across HAProxy versions, against HAProxy's reference C
# SPOA in the same run: for Debian's HAProxy (2.6) and HAProxy 3.4.0
# (built by tests/peers/build.sh from $PGBDR_PEERS), wrk against three
# identical HTTP frontends, alternating: no filter; filter spoe asking
# pgbdr-agent (haproxy-examples/pgbdr-spoe.conf, scope [pgbdr], as
# shipped); and the same engine asking the reference SPOA (spoa-example,
# one worker, pipelining), which ACKs the same NOTIFY with no actions.
# Prints req/s and the two ratios, and records them in bench/RESULTS.md
# under "### SPOE filter across HAProxy versions".
#
# Targets, per version: filter with pgbdr-agent >= 0.7 of no filter, and
# >= 1.5 x the filter with the reference SPOA.
#
# Usage: bench/spoe_versions.sh [seconds per round (10)] [rounds (3)]
# Environment: PGBDR_AGENT (default build/agent/pgbdr-agent), PGBDR_PEERS,
#              WRK_THREADS (2), WRK_CONNECTIONS (64)
# Needs haproxy, wrk, curl, python3 and libevent (the SPOA).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
AGENT=${PGBDR_AGENT:-$ROOT/build/agent/pgbdr-agent}
DURATION=${1:-10}
ROUNDS=${2:-3}
THREADS=${WRK_THREADS:-2}
CONNS=${WRK_CONNECTIONS:-64}
RESULTS=$ROOT/bench/RESULTS.md

peer() {
	local out
	out=$(bash "$ROOT/tests/peers/build.sh" "$1") || exit 1
	echo "${out#* }"
}
HAPROXY_34=$(peer haproxy-3.4.0)
SPOA=$(peer spoa)

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

TMP=$(mktemp -d /tmp/pgbdr-bench-XXXXXX)
PIDS=()
HAPROXY_PID=
cleanup() {
	[ -n "$HAPROXY_PID" ] && kill "$HAPROXY_PID" 2>/dev/null || true
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT

HTTP_PORT=$(free_port)
SPOE_PORT=$(free_port)
SPOA_PORT=$(free_port)
DEAD_PORT=$(free_port)

# No PostgreSQL: the agent watches a node that refuses connections, which
# only changes the answer (down, with a reason), not the cost of giving it.
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
"$SPOA" -p "$SPOA_PORT" -n 1 -c pipelining >"$TMP/spoa.log" 2>&1 &
PIDS+=($!)

# The same engine for the SPOA: only the agent's name and backend differ.
sed -e 's/^spoe-agent pgbdr-agent/spoe-agent spoa-agent/' \
	-e 's/use-backend pgbdr_agents/use-backend spoa_agents/' \
	"$ROOT/haproxy-examples/pgbdr-spoe.conf" >"$TMP/spoa-spoe.conf"

write_cfg() {
	cat >"$TMP/haproxy.cfg" <<EOF
global
    maxconn 4096
    stats socket $TMP/stats.sock mode 600 level admin

defaults
    mode http
    timeout connect 3s
    timeout client 30s
    timeout server 30s

frontend nofilter
    bind 127.0.0.1:$NOFILTER_PORT
    default_backend app

frontend pgbdr
    bind 127.0.0.1:$PGBDR_PORT
    filter spoe engine pgbdr config $ROOT/haproxy-examples/pgbdr-spoe.conf
    default_backend app

frontend spoa
    bind 127.0.0.1:$SPOA_FE_PORT
    filter spoe engine pgbdr config $TMP/spoa-spoe.conf
    default_backend app

backend app
    http-request return status 200 content-type text/plain string "ok"
    http-after-response set-header X-Error %[var(txn.pgbdr.error)] if { var(txn.pgbdr.error) -m found }

backend pgbdr_agents
.if version_atleast(3.1)
    mode spop
    http-reuse always
.else
    mode tcp
.endif
    server agent1 127.0.0.1:$SPOE_PORT

backend spoa_agents
.if version_atleast(3.1)
    mode spop
    http-reuse always
.else
    mode tcp
.endif
    server spoa1 127.0.0.1:$SPOA_PORT
EOF
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

spop_connections() {
	curl -fs "http://127.0.0.1:$HTTP_PORT/metrics" |
		awk '/^pgbdr_spop_connections_total/ { print $2 }'
}

# Both filters must really answer before anything is measured: a SPOE
# error (X-Error) would make the filter look free.
answers() {
	local port=$1
	curl -fsi "http://127.0.0.1:$port/" 2>/dev/null | grep -qi '^HTTP/1.1 200' &&
		! curl -fsi "http://127.0.0.1:$port/" | grep -qi '^x-error'
}

rows=()
measure() {
	local bin=$1 version
	version=$("$bin" -v | awk 'NR == 1 { print $3 }')
	NOFILTER_PORT=$(free_port)
	PGBDR_PORT=$(free_port)
	SPOA_FE_PORT=$(free_port)
	write_cfg
	"$bin" -c -f "$TMP/haproxy.cfg" >/dev/null
	"$bin" -f "$TMP/haproxy.cfg" -db >"$TMP/haproxy-$version.log" 2>&1 &
	HAPROXY_PID=$!
	for port in "$PGBDR_PORT" "$SPOA_FE_PORT"; do
		for _ in $(seq 100); do answers "$port" && break; sleep 0.1; done
		answers "$port" || {
			echo "HAProxy $version: the filter on port $port does not answer" >&2
			cat "$TMP/haproxy-$version.log" "$TMP/agent.log" "$TMP/spoa.log" >&2
			exit 1
		}
	done
	run_wrk "$NOFILTER_PORT" 2 >/dev/null
	run_wrk "$PGBDR_PORT" 2 >/dev/null
	run_wrk "$SPOA_FE_PORT" 2 >/dev/null
	local none=0 agent=0 spoa=0 r a b c conns_before conns_after
	conns_before=$(spop_connections)
	for r in $(seq "$ROUNDS"); do
		a=$(run_wrk "$NOFILTER_PORT" "$DURATION")
		b=$(run_wrk "$PGBDR_PORT" "$DURATION")
		c=$(run_wrk "$SPOA_FE_PORT" "$DURATION")
		echo "HAProxy $version round $r: no filter $a, pgbdr-agent $b, reference SPOA $c req/s"
		none=$(python3 -c "print($none + $a)")
		agent=$(python3 -c "print($agent + $b)")
		spoa=$(python3 -c "print($spoa + $c)")
	done
	conns_after=$(spop_connections)
	kill "$HAPROXY_PID"
	wait "$HAPROXY_PID" 2>/dev/null || true
	HAPROXY_PID=
	rows+=("$(python3 - "$version" "$none" "$agent" "$spoa" "$ROUNDS" \
		"$((conns_after - conns_before))" <<'EOF'
import sys
v, none, agent, spoa, rounds, conns = sys.argv[1], *map(float, sys.argv[2:5]), int(sys.argv[5]), sys.argv[6]
r1, r2 = agent / none, agent / spoa
ok = "PASS" if r1 >= 0.7 and r2 >= 1.5 else "FAIL"
print(f"| {v} | {none / rounds:,.0f} | {agent / rounds:,.0f} | {spoa / rounds:,.0f} | "
      f"{r1:.2f} | {r2:.2f} | {conns} | {ok} |")
EOF
)")
}

measure haproxy
measure "$HAPROXY_34"

table=$(printf '%s\n' "${rows[@]}")
echo "$table"

section=$(cat <<EOF
### SPOE filter across HAProxy versions

\`bench/spoe_versions.sh $DURATION $ROUNDS\`, $(date -u +%Y-%m-%d): wrk -t$THREADS -c$CONNS, ${DURATION}s per
round, $ROUNDS rounds alternating between three identical HTTP frontends of one HAProxy: no
filter, \`filter spoe\` with pgbdr-agent (haproxy-examples/pgbdr-spoe.conf, scope [pgbdr],
eight set-var actions per ACK), and the same engine with HAProxy's reference C SPOA
(spoa-example, one worker, pipelining; an ACK with no actions). $(nproc) CPU(s) shared by wrk,
HAProxy, the agent, the SPOA and other tenants. Targets per version: pgbdr-agent / no filter
>= 0.7, pgbdr-agent / reference SPOA >= 1.5. "SPOP conns" is how many connections HAProxy
opened to pgbdr-agent during the measured rounds.

| HAProxy | no filter req/s | pgbdr-agent req/s | reference SPOA req/s | agent / none | agent / SPOA | SPOP conns | targets |
|---|---|---|---|---|---|---|---|
$table
EOF
)

python3 - "$RESULTS" "$section" <<'EOF'
import re, sys
path, section = sys.argv[1], sys.argv[2].rstrip() + "\n"
text = open(path).read()
sub = re.compile(r"^### SPOE filter across HAProxy versions\n.*?(?=^##|\Z)", re.S | re.M)
if sub.search(text):
    text = sub.sub(lambda m: section + "\n", text, count=1)
else:
    # a subsection of "## SPOE filter ratio", which bench/run.sh keeps
    m = re.search(r"^## SPOE filter ratio\n.*?(?=^## |\Z)", text, re.S | re.M)
    if m:
        text = text[:m.end()].rstrip() + "\n\n" + section + "\n" + text[m.end():]
    else:
        text = text.rstrip() + "\n\n## SPOE filter ratio\n\n" + section
open(path, "w").write(text.rstrip() + "\n")
EOF
echo "recorded in $RESULTS"
