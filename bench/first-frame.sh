#!/usr/bin/env bash
# First frame, side by side: our page and relay beside the original JavaScript page and its
# socket.io relay (../shared/anchors/seed-socketio), alternating runs in one go; prints both
# timelines and the ratio. Needs the anchors beside the checkout, npm, and Chromium.
#   bench/first-frame.sh [--runs N]
set -euo pipefail
cd "$(dirname "$0")/.."
anchors=${ANCHORS:-../shared/anchors}
work=target/first-frame-work
mkdir -p "$work"
if [ ! -d "$work/seed-socketio/node_modules" ]; then
  rm -rf "$work/seed-socketio"
  cp -r "$anchors/seed-socketio" "$work/seed-socketio"
  chmod -R u+w "$work/seed-socketio"
  (cd "$work/seed-socketio" && npm ci --no-audit --no-fund --loglevel=error)
fi
[ -f dist/index.html ] || scripts/build-client.sh
cargo build --release -p e2e --bin first-frame
export CHROMEDRIVER=${CHROMEDRIVER:-/usr/bin/chromedriver}
exec scripts/loopback-only.sh target/release/first-frame --seed-dir "$work/seed-socketio" "$@"
