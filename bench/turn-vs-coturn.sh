#!/bin/bash
# CPU of the built-in TURN server against coturn's for the same relayed load, on 127.0.0.1:
# coturn's turnutils_uclient in client-to-client mode (10 clients, 3000 messages of 1000 bytes
# each, 2 ms apart), once through each server. Prints each server's CPU ticks (1/100 s) and what
# uclient counted. Needs Debian's coturn and a release build of the relay:
#   cargo build --release -p server && bench/turn-vs-coturn.sh
# Between two allocations of one server, the built-in one hands datagrams over in memory while
# coturn sends them through the kernel: to real peers the ratio is less favourable than here.
set -u
SERVER=${SERVER:-${CARGO_TARGET_DIR:-target}/release/server}
SECRET=benchsecret
DIR=$(mktemp -d)
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
load() {
  turnutils_uclient -y -c -m 10 -n 3000 -l 1000 -z 2 -W "$SECRET" -u bench -p "$1" 127.0.0.1 2>&1 |
    grep -E "tot_send_msgs=|lost packets|round trip" | tail -3
}
"$SERVER" --addr 127.0.0.1 --port 28080 --no-tls --stun-port 23478 --turn-secret "$SECRET" \
  --turn-max-kbps 0 --data-dir "$DIR/data" --dist /nonexistent >"$DIR/relay.log" 2>&1 &
OURS=$!
turnserver -n --listening-ip=127.0.0.1 --listening-port=23479 --use-auth-secret \
  --static-auth-secret="$SECRET" --realm=bench --min-port=46000 --max-port=46999 \
  --allow-loopback-peers --no-tls --no-dtls --no-cli --log-file="$DIR/coturn.log" >/dev/null 2>&1 &
COTURN=$!
trap 'kill $OURS $COTURN 2>/dev/null; rm -rf "$DIR"' EXIT
sleep 2
for name in built-in coturn; do
  if [ "$name" = built-in ]; then pid=$OURS port=23478; else pid=$COTURN port=23479; fi
  before=$(cpu $pid)
  out=$(load $port)
  echo "== $name: $(( $(cpu $pid) - before )) CPU ticks"
  echo "$out"
done
