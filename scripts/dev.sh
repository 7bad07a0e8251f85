#!/usr/bin/env bash
# The development loop: the relay on :8080 (plain http, no TLS) and `trunk serve` on :8081,
# which rebuilds the client on every change, reloads the page and proxies /ws to the relay.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -p server
target/debug/server --tls-port 0 --dist dist &
relay=$!
trap 'kill $relay 2>/dev/null || true' EXIT
echo "[dev] open http://127.0.0.1:8081 and http://127.0.0.1:8081/#true"
trunk serve
