#!/usr/bin/env bash
# Build the fuzz harnesses and run each for SECONDS from its committed
# seed corpus:
#
#   bash tests/fuzz/run.sh [SECONDS] [HARNESS...]     (default 60, all five)
#
# New inputs go to a scratch corpus in the output dir, never into
# tests/fuzz/corpus/. Exits non-zero if any harness crashed, leaked,
# timed out (-timeout=5) or ran out of memory (-rss_limit_mb=2048);
# the input that did it is kept as $FUZZ_OUT/artifacts/HARNESS-*.
# Prints one line per harness: runs, execs/s, cov: and ft: at the end.
#
# Environment: FUZZ_OUT (default build-fuzz), CC (default clang),
# FUZZ_HTTP_STRICT=1 (see fuzz_http.c: fail on a known libevent issue).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
seconds=${1:-60}
shift || true
harnesses=("$@")
[ ${#harnesses[@]} -eq 0 ] && harnesses=(fuzz_spop fuzz_agentcheck fuzz_config fuzz_http fuzz_probe fuzz_etcd)
out=${FUZZ_OUT:-$top/build-fuzz}

declare -A max_len=([fuzz_spop]=16384 [fuzz_agentcheck]=1024 [fuzz_config]=8192
		    [fuzz_http]=8192 [fuzz_probe]=65536 [fuzz_etcd]=8192)

if ! bash "$here/build.sh" "$out"; then
	echo "fuzz: build FAILED"
	exit 1
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

status=0
summary=()
mkdir -p "$out/artifacts" "$out/logs"
for h in "${harnesses[@]}"; do
	seeds="$here/corpus/$h"
	work="$out/corpus/$h"
	log="$out/logs/$h.log"
	mkdir -p "$work"
	echo "=== fuzz: $h for ${seconds}s"
	"$out/$h" "$work" "$seeds" \
		-max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 -detect_leaks=1 \
		-max_len="${max_len[$h]:-4096}" -print_final_stats=1 \
		-artifact_prefix="$out/artifacts/$h-" >"$log" 2>&1
	rc=$?
	last=$(grep -E '^#[0-9]+.*cov: [0-9]+' "$log" | tail -n 1)
	cov=$(sed -nE 's/.*cov: ([0-9]+).*/\1/p' <<<"$last")
	ft=$(sed -nE 's/.*ft: ([0-9]+).*/\1/p' <<<"$last")
	runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' "$log" | tail -n 1)
	eps=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+)/\1/p' "$log" | tail -n 1)
	rss=$(sed -nE 's/^stat::peak_rss_mb: *([0-9]+)/\1/p' "$log" | tail -n 1)
	line=$(printf '%-16s runs %-9s execs/s %-7s cov %-6s ft %-7s rss %sMB' \
		"$h" "${runs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}" "${rss:-?}")
	if [ $rc -ne 0 ]; then
		status=1
		line="$line  FAILED (exit $rc)"
		echo "--- $h: FAILED, exit $rc; the end of $log:"
		grep -vE '^#[0-9]+' "$log" | tail -n 40
		ls -1 "$out/artifacts/$h-"* 2>/dev/null | sed 's/^/artifact: /'
	fi
	echo "$line"
	summary+=("$line")
done

echo "=== fuzz summary (${seconds}s each)"
printf '%s\n' "${summary[@]}"
exit $status
