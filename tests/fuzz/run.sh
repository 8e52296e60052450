#!/usr/bin/env bash
# Build the fuzz harnesses and run each for SECONDS from its committed
# seed corpus:
#
#   bash tests/fuzz/run.sh [SECONDS] [HARNESS...]     (default 60, all six)
#
# New inputs go to a scratch corpus in the output dir, never into
# tests/fuzz/corpus/. Exits non-zero if any harness crashed, leaked,
# timed out (-timeout=5) or ran out of memory (-rss_limit_mb=2048);
# the input that did it is kept as $FUZZ_OUT/artifacts/HARNESS-*.
# Prints one line per harness: runs, execs/s, cov: and ft: at the end.
#
# Environment: FUZZ_OUT (default build-fuzz), CC (default clang),
# FUZZ_JOBS (harnesses at once, default the number of cores),
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

mkdir -p "$out/artifacts" "$out/logs"

# One harness, its one-line result in $out/logs/$h.line; returns its exit code.
run_harness() {
	local h=$1 seeds="$here/corpus/$1" work="$out/corpus/$1" log="$out/logs/$1.log"
	local rc last cov ft runs eps rss line
	mkdir -p "$work"
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
	[ $rc -ne 0 ] && line="$line  FAILED (exit $rc)"
	echo "$line" >"$out/logs/$h.line"
	return $rc
}

# Each harness is one process on one core: FUZZ_JOBS (default: the
# number of cores) of them run at once, each for the full SECONDS.
jobs=${FUZZ_JOBS:-$(nproc)}
status=0
summary=()
for ((i = 0; i < ${#harnesses[@]}; i += jobs)); do
	batch=("${harnesses[@]:i:jobs}")
	pids=()
	echo "=== fuzz: ${batch[*]} for ${seconds}s"
	for h in "${batch[@]}"; do
		run_harness "$h" &
		pids+=($!)
	done
	for k in "${!batch[@]}"; do
		h=${batch[k]}
		if ! wait "${pids[k]}"; then
			status=1
			echo "--- $h: FAILED; the end of $out/logs/$h.log:"
			grep -vE '^#[0-9]+' "$out/logs/$h.log" | tail -n 40
			ls -1 "$out/artifacts/$h-"* 2>/dev/null | sed 's/^/artifact: /'
		fi
		cat "$out/logs/$h.line"
		summary+=("$(cat "$out/logs/$h.line")")
	done
done

echo "=== fuzz summary (${seconds}s each, $jobs at a time)"
printf '%s\n' "${summary[@]}"
exit $status
