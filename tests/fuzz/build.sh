#!/usr/bin/env bash
# Build the libFuzzer harnesses with clang (ASan + UBSan + libFuzzer)
# straight from the sources, without meson:
#
#   tests/fuzz/build.sh [OUTDIR]        (default: build-fuzz)
#
# The code under test is every agent/*.c but main.c, plus spoe/spop.c:
# all of it is instrumented for coverage, so a harness that reaches a
# file through the agent (http.c -> render.c -> evaluate.c...) explores
# it too. Needs clang (14 on Debian 12), libclang-rt-dev, and the
# -dev packages of libpq, libevent, libsystemd and json-c.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
out=${1:-$top/build-fuzz}
mkdir -p "$out/obj"
out=$(cd "$out" && pwd)

CC=${CC:-clang}
if ! command -v "$CC" >/dev/null; then
	for c in clang-16 clang-15 clang-14; do
		command -v "$c" >/dev/null && CC=$c && break
	done
fi
command -v "$CC" >/dev/null || { echo "build.sh: clang not found" >&2; exit 1; }

version=$(sed -n "s/^ *version *: *'\([^']*\)'.*/\1/p" "$top/meson.build" | head -n 1)
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
CFLAGS=(-std=c11 -D_GNU_SOURCE "-DPGBDR_VERSION=\"${version:-0}\"" -g -O1
	-fno-omit-frame-pointer $SAN -Wall -Wno-unused-parameter
	-I"$top/agent" -I"$top/spoe" $(pkg-config --cflags libpq libevent libsystemd json-c))
LIBS=($(pkg-config --libs libpq libevent libsystemd json-c) -lm)

# Library objects: coverage instrumentation without libFuzzer's main.
objs=()
for src in "$top"/agent/*.c "$top"/spoe/spop.c; do
	[ "$(basename "$src")" = main.c ] && continue
	obj="$out/obj/$(basename "$(dirname "$src")")_$(basename "$src" .c).o"
	if [ ! -e "$obj" ] || [ "$src" -nt "$obj" ] || [ "$0" -nt "$obj" ] ||
	   [ -n "$(find "$top/agent" "$top/spoe" -name '*.h' -newer "$obj" 2>/dev/null | head -n 1)" ]; then
		"$CC" "${CFLAGS[@]}" -fsanitize=fuzzer-no-link -c "$src" -o "$obj"
	fi
	objs+=("$obj")
done

harnesses=(fuzz_spop fuzz_agentcheck fuzz_config fuzz_http fuzz_probe fuzz_etcd)
for h in "${harnesses[@]}"; do
	if [ "$h" = fuzz_spop ]; then
		# the codec alone: no libevent, no libpq
		deps=("$out/obj/spoe_spop.o")
		libs=()
	else
		deps=("${objs[@]}")
		libs=("${LIBS[@]}")
	fi
	"$CC" "${CFLAGS[@]}" -fsanitize=fuzzer "$here/$h.c" "${deps[@]}" "${libs[@]}" -o "$out/$h"
done
echo "build.sh: built ${harnesses[*]} in $out"
