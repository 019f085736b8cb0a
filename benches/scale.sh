#!/usr/bin/env bash
# Scale and peer benchmark: chatbridge on SQLite and on PostgreSQL with 1, 2 and 3 replicas,
# against Node-RED 4.1 doing the same forward without durability. Installs Node-RED from npm
# once (4.1.x: 5.x needs Node 22), needs a PostgreSQL server (CHATBRIDGE_BENCH_POSTGRES, an
# admin URL; default the local one with trust auth), and passes its arguments on:
#   benches/scale.sh [--chats 10000] [--senders 32] [--workers 32] [--only sqlite,postgres,node-red]
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${CHATBRIDGE_CI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/chatbridge-ci}"
node_red_version=4.1.15
node_red="$cache/node-red-$node_red_version/node_modules/.bin/node-red"
if [ ! -x "$node_red" ]; then
    echo "== installing node-red@$node_red_version"
    mkdir -p "$cache/node-red-$node_red_version"
    npm install --prefix "$cache/node-red-$node_red_version" --no-audit --no-fund --loglevel=error \
        "node-red@$node_red_version"
fi
# The binary under test is the one `cargo build --release` makes, copied aside: the benchmark
# build that follows writes its own, with dev-dependency features, to the same path.
cargo build --release --bin chatbridge
mkdir -p target/scale
cp target/release/chatbridge target/scale/chatbridge
CHATBRIDGE_BENCH_BIN="$PWD/target/scale/chatbridge" CHATBRIDGE_BENCH_NODE_RED="$node_red" \
    cargo bench --bench scale -- "$@"
