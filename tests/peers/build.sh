#!/usr/bin/env bash
# Build the real peers that the tests run against (HAProxy 3.x, the
# reference C SPOA, BDR 1.0 on its patched PostgreSQL 9.4, Spock 5 for
# Debian's PostgreSQL 15) from the tarballs in $PGBDR_PEERS, and cache
# each build under $PGBDR_PEERS_CACHE/<sha256>/, the sha256 being that of
# its tarball(s) and of the recipe number below, so a rerun on the same machine does
# not rebuild.
#
#   tests/peers/build.sh PEER...   PEER: haproxy-3.0.11 haproxy-3.2.0
#                                  haproxy-3.4.0 spoa bdr spock
#
# Prints one line per peer, "PEER PATH" (the binary for haproxy-* and
# spoa, the install prefix for bdr, the staged tree for spock), and
# exits 2 with one line on stderr when $PGBDR_PEERS is absent.
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
peers=${PGBDR_PEERS:-$top/../shared/peers}
cache=${PGBDR_PEERS_CACHE:-/var/cache/pgbdr-peers}
jobs=${PGBDR_PEERS_JOBS:-2}
# Bump when a build command below changes, so the cache is rebuilt.
recipe=1

if [ ! -d "$peers" ]; then
	echo "real peers skipped: PGBDR_PEERS ($peers) is not a folder" >&2
	exit 2
fi
peers=$(cd "$peers" && pwd)

# key FILE...: a cache key from the tarballs and this recipe.
key() {
	{ sha256sum "$@" | cut -d' ' -f1; echo "$recipe"; } | sha256sum | cut -d' ' -f1
}

# cached KEY RESULT BUILDER: run BUILDER DIR once per key, under a lock.
cached() {
	local k=$1 result=$2 builder=$3 dir="$cache/$1"
	mkdir -p "$cache"
	exec 9>"$cache/$k.lock"
	flock 9
	if [ ! -e "$dir/.done" ]; then
		rm -rf "$dir" "$dir.tmp"
		mkdir -p "$dir.tmp"
		local t0=$SECONDS
		"$builder" "$dir.tmp" >"$cache/$k.log" 2>&1 || {
			echo "build of $result failed, log: $cache/$k.log" >&2
			tail -n 30 "$cache/$k.log" >&2
			exec 9>&-
			return 1
		}
		echo "$((SECONDS - t0))" >"$dir.tmp/.seconds"
		touch "$dir.tmp/.done"
		mv "$dir.tmp" "$dir"
	fi
	exec 9>&-
}

build_haproxy() {
	local out=$1 src
	tar -xzf "$peers/$ver.tar.gz" -C "$out"
	src=$(find "$out" -mindepth 1 -maxdepth 1 -type d | head -n 1)
	make -C "$src" -j"$jobs" TARGET=linux-glibc USE_LUA=1 LUA_INC=/usr/include/lua5.3 \
		LUA_LIB_NAME=lua5.3
	cp "$src/haproxy" "$out/haproxy"
	rm -rf "$src"
}

build_spoa() {
	local out=$1
	tar -xzf "$peers/spoa-example.tar.gz" -C "$out"
	make -C "$out/spoa-example" CFLAGS="-O2 -Wall -pthread"
	cp "$out/spoa-example/spoa" "$out/spoa"
	rm -rf "$out/spoa-example"
}

build_bdr() {
	local out=$1 prefix=$1/prefix src
	mkdir -p "$out/src"
	tar -xzf "$peers/bdr-pg-9.4.tar.gz" -C "$out/src"
	tar -xzf "$peers/bdr-plugin-1.0.tar.gz" -C "$out/src"
	src=$out/src/bdr-pg-9.4
	(cd "$src" && ./configure --prefix="$prefix" --without-openssl --without-readline \
		--without-zlib CFLAGS="-O2 -fno-common" &&
		make -j"$jobs" && make -C contrib -j"$jobs" && make install && make -C contrib install)
	(cd "$out/src/bdr-plugin-1.0" && PATH=$prefix/bin:$PATH ./configure && make -j"$jobs" &&
		make install)
	rm -rf "$out/src"
	# The servers run as postgres, which must read the tree.
	chmod -R a+rX "$out"
}

build_spock() {
	local out=$1 pgc=/usr/lib/postgresql/15/bin/pg_config
	tar -xzf "$peers/spock-5.0.11.tar.gz" -C "$out"
	bash "$peers/spock-stock-pg15-shim.sh" "$out/spock-5.0.11"
	make -C "$out/spock-5.0.11" -j"$jobs" PG_CONFIG=$pgc
	make -C "$out/spock-5.0.11" PG_CONFIG=$pgc DESTDIR="$out/stage" install
	rm -rf "$out/spock-5.0.11"
}

for peer in "$@"; do
	case $peer in
	haproxy-*)
		ver=$peer
		[ -f "$peers/$ver.tar.gz" ] || { echo "no $peers/$ver.tar.gz" >&2; exit 1; }
		k=$(key "$peers/$ver.tar.gz")
		cached "$k" "$peer" build_haproxy
		echo "$peer $cache/$k/haproxy"
		;;
	spoa)
		k=$(key "$peers/spoa-example.tar.gz")
		cached "$k" spoa build_spoa
		echo "spoa $cache/$k/spoa"
		;;
	bdr)
		k=$(key "$peers/bdr-pg-9.4.tar.gz" "$peers/bdr-plugin-1.0.tar.gz")
		cached "$k" bdr build_bdr
		echo "bdr $cache/$k/prefix"
		;;
	spock)
		k=$(key "$peers/spock-5.0.11.tar.gz" "$peers/spock-stock-pg15-shim.sh")
		cached "$k" spock build_spock
		# The extension must sit in PostgreSQL 15's own tree.
		cp -a "$cache/$k/stage/." /
		echo "spock $cache/$k/stage"
		;;
	*)
		echo "unknown peer $peer" >&2
		exit 1
		;;
	esac
done
