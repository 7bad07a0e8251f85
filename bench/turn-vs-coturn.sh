#!/bin/bash
# The built-in TURN server beside coturn, for the same load from coturn's own test client:
# CPU per relayed Mbit/s, packet loss and the round trip, each once through each server in one
# run, with the ratios. Two loads:
#   peer    turnutils_uclient sends through the server to an echo peer (turnutils_peer) at
#           another address, as a browser's media goes to the other side: every datagram
#           crosses the kernel twice in each server, as with real peers.
#   c2c     client to client (-y): the server relays between two of its own allocations, as
#           between two homes behind strict NATs. The built-in server hands these datagrams
#           over in memory, coturn through the kernel.
# Runs in a network namespace of its own (10.99.0.1 the servers, 10.99.0.2 the peer), so it
# needs root; nothing leaves it. Needs Debian's coturn and a release build of the relay:
#   cargo build --release -p server && bench/turn-vs-coturn.sh
# CLIENTS, MESSAGES, SIZE and GAP_MS change the load (default: 8 clients, 3000 messages of
# 1000 bytes each, 2 ms apart: about 32 Mbit/s each way through each server). Client to client
# holds two allocations per client for one user, whom the built-in server allows 16.
set -u
SERVER=$(realpath "${SERVER:-${CARGO_TARGET_DIR:-target}/release/server}")
CLIENTS=${CLIENTS:-8} MESSAGES=${MESSAGES:-3000} SIZE=${SIZE:-1000} GAP_MS=${GAP_MS:-2}
SECRET=benchsecret
NS=turnbench$$
DIR=$(mktemp -d)
[ -x "$SERVER" ] || { echo "no relay binary at $SERVER: cargo build --release -p server" >&2; exit 1; }
command -v turnserver >/dev/null || { echo "no coturn: scripts/setup.sh --test installs it" >&2; exit 1; }

in_ns() { ip netns exec "$NS" "$@"; }
cleanup() {
  for pid in $(ip netns pids "$NS" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
  ip netns del "$NS" 2>/dev/null
  rm -rf "$DIR"
}
trap cleanup EXIT
ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" link add servers type veth peer name peer
ip -n "$NS" addr add 10.99.0.1/24 dev servers
ip -n "$NS" addr add 10.99.0.2/24 dev peer
ip -n "$NS" link set servers up
ip -n "$NS" link set peer up

# The relay may relay to the peer's private address only with --turn-allow-private; coturn
# relays to private addresses by default.
# (Started by `ip netns exec` itself, which becomes the program: $! is the server's pid.)
ip netns exec "$NS" "$SERVER" --addr 10.99.0.1 --port 28080 --no-tls --stun-port 23478 --turn-secret "$SECRET" \
  --turn-max-kbps 0 --turn-allow-private --public-ip 10.99.0.1 --data-dir "$DIR/data" \
  --dist /nonexistent >"$DIR/relay.log" 2>&1 &
OURS=$!
disown $OURS
ip netns exec "$NS" turnserver -n --listening-ip=10.99.0.1 --relay-ip=10.99.0.1 --listening-port=23479 \
  --use-auth-secret --static-auth-secret="$SECRET" --realm=bench --min-port=46000 \
  --max-port=46999 --no-tls --no-dtls --no-cli --log-file="$DIR/coturn.log" >/dev/null 2>&1 &
COTURN=$!
disown $COTURN
ip netns exec "$NS" turnutils_peer -L 10.99.0.2 -p 3480 >/dev/null 2>&1 &
disown $!
sleep 2

cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
# Prints "<cpu ticks> <bytes sent> <bytes received> <lost> <rtt ms>" for one run.
measure() {
  local pid=$1 port=$2 mode=$3 before out
  before=$(cpu "$pid")
  local target=(-e 10.99.0.2 -r 3480)
  [ "$mode" = c2c ] && target=(-y)
  out=$(in_ns turnutils_uclient "${target[@]}" -m "$CLIENTS" -n "$MESSAGES" -l "$SIZE" \
    -z "$GAP_MS" -W "$SECRET" -u "bench-$mode" -p "$port" 10.99.0.1 2>&1)
  local ticks=$(($(cpu "$pid") - before))
  local sent recv lost rtt
  sent=$(grep -o 'tot_send_bytes ~ [0-9]*' <<<"$out" | tail -1 | grep -o '[0-9]*$')
  recv=$(grep -o 'tot_recv_bytes ~ [0-9]*' <<<"$out" | tail -1 | grep -o '[0-9]*$')
  lost=$(grep -o 'Total lost packets [0-9]*' <<<"$out" | tail -1 | grep -o '[0-9]*$')
  rtt=$(grep -o 'Average round trip delay [0-9.]*' <<<"$out" | tail -1 | grep -o '[0-9.]*$')
  if [ -z "$sent" ] || [ -z "$recv" ]; then
    echo "uclient printed no totals:" >&2
    tail -5 <<<"$out" >&2
    echo "$ticks 0 0 ? ?"
    return
  fi
  echo "$ticks $sent $recv ${lost:-?} ${rtt:-?}"
}

printf '%-5s %-9s %9s %12s %14s %6s %9s\n' load server "cpu (s)" "relayed Mbit" "cpu ms/Mbit" lost "rtt (ms)"
for mode in peer c2c; do
  declare -A per_mbit=()
  for name in built-in coturn; do
    if [ "$name" = built-in ]; then pid=$OURS port=23478; else pid=$COTURN port=23479; fi
    read -r ticks sent recv lost rtt < <(measure "$pid" "$port" "$mode")
    # Each byte the client sent went through the server once, and each it got back once.
    mbit=$(awk -v s="$sent" -v r="$recv" 'BEGIN { printf "%.1f", (s + r) * 8 / 1e6 }')
    ms=$(awk -v t="$ticks" -v m="$mbit" 'BEGIN { if (m > 0) printf "%.2f", t * 10 / m; else print "nan" }')
    per_mbit[$name]=$ms
    printf '%-5s %-9s %9.2f %12s %14s %6s %9s\n' "$mode" "$name" "$(awk -v t="$ticks" 'BEGIN { print t / 100 }')" \
      "$mbit" "$ms" "$lost" "$rtt"
  done
  awk -v a="${per_mbit[built-in]}" -v b="${per_mbit[coturn]}" -v m="$mode" \
    'BEGIN { if (b > 0) printf "%-5s built-in / coturn, CPU per relayed Mbit: %.2fx\n", m, a / b }'
done
