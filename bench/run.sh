#!/usr/bin/env bash
# Builds the relay, the generator and the forwarder, then runs the benchmark pinned: the relays
# on CPU 0, the generator on CPU 1 (when the machine has two CPUs and taskset).
#
#   bench/run.sh            full run, all four relays (about 3 minutes; needs node and npm)
#   bench/run.sh --smoke    our relay and the forwarder, a tiny workload, every frame checked;
#                           exits non-zero if a message is lost or misrouted (about 15 s)
#   bench/run.sh --relays ours --phases accept,wss
#                           our relay's accept bursts only: ws, then wss (full TLS handshakes,
#                           then resumed sessions), as in docs/benchmarks.md "HTTPS accept"
#   bench/run.sh --help     every option (rates, pairs, which relays, phases, --out FILE, ...)
#
# The full run builds in release mode; --smoke uses the dev profile, which `cargo test` has
# mostly built already. Honours CARGO_TARGET_DIR.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"

profile=release
for arg in "$@"; do
  [[ "$arg" == --smoke ]] && profile=debug
done
if [[ "$profile" == release ]]; then
  cargo build --release -p server -p bench --manifest-path "$root/Cargo.toml"
else
  cargo build -p server -p bench --manifest-path "$root/Cargo.toml"
fi
bin="$target/$profile"

# The generator holds up to 10k sockets: raise its open-file limit as far as allowed.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

if [[ "$(nproc)" -ge 2 ]] && command -v taskset >/dev/null; then
  exec taskset -c 1 "$bin/bench" --relay-cpu 0 "$@"
fi
echo "[run.sh] fewer than 2 CPUs or no taskset: the relays and the generator share the CPUs" >&2
exec "$bin/bench" "$@"
