#!/usr/bin/env bash
# Runs a command in a network namespace of its own, so that the browsers of the tests can reach
# this namespace's own addresses and nothing else: their WebRTC candidates, mDNS queries and
# background requests never leave the machine.
#
# Besides `lo`, the namespace has one veth pair whose both ends stay inside it (vc0 holds
# 10.253.0.1/30 and the default route, via vc1's 10.253.0.2): Firefox gathers no ICE candidate on
# loopback alone, nor without a default route, and this gives it a host address to gather. The
# pair is a cable from the namespace to itself, with no link to the host's network, and packets
# to any other address are dropped at vc1 (a new namespace does not forward).
#
# Where namespaces are not allowed (no root, a locked-down container), runs the command as it is.
set -euo pipefail
if command -v ip >/dev/null && unshare --net --map-root-user true 2>/dev/null; then
  exec unshare --net --map-root-user sh -c '
    ip link set lo up || exit 1
    if ip link add vc0 type veth peer name vc1 &&
      ip link set vc0 up && ip link set vc1 up &&
      ip addr add 10.253.0.1/30 dev vc0 && ip addr add 10.253.0.2/30 dev vc1 &&
      ip route add default via 10.253.0.2 dev vc0; then :
    else
      echo "[loopback-only] no veth pair in the namespace: Firefox will find no ICE candidate" >&2
    fi
    exec "$@"' sh "$@"
fi
echo "[loopback-only] cannot create a network namespace here; running without one" >&2
exec "$@"
