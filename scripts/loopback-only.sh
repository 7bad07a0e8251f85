#!/usr/bin/env bash
# Runs a command in a network namespace of its own that has only the loopback interface, so
# the browsers of the tests can reach 127.0.0.1 and nothing else: their WebRTC candidates,
# mDNS queries and background requests never leave the machine.
# Where namespaces are not allowed (no root, a locked-down container), runs it as it is.
set -euo pipefail
if command -v ip >/dev/null && unshare --net --map-root-user true 2>/dev/null; then
  exec unshare --net --map-root-user sh -c 'ip link set lo up && exec "$@"' sh "$@"
fi
echo "[loopback-only] cannot create a network namespace here; running without one" >&2
exec "$@"
