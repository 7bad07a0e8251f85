#!/usr/bin/env python3
"""Our relay's RSS per socket after `join`, then after a call's signaling: in each of PAIRS rooms
of two, one side sends an offer and the other an answer of ~5.8 KB, then 10 candidates each way.
The benchmark's idle phase measures only the first (docs/benchmarks.md, "Lighter per connection
(2026-11-22, session 4)"). A raw WebSocket client over plain sockets, no libraries; the relay is
pinned to CPU 0 like the benchmark's and talks to 127.0.0.1 only. Needs `ulimit -n` > 2 * PAIRS.

    python3 bench/incall_memory.py target/release/server 47935 1000
"""
import json, os, random, socket, struct, subprocess, sys, tempfile, time

server, port, pairs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
env = dict(os.environ, PING_SECS="300", MAX_PER_IP="1000000", MAX_SESSIONS="1000000",
           RATE_PER_SEC="1000000000", RATE_BURST="1000000000")
work = tempfile.mkdtemp(prefix="incall-")
log = open(os.path.join(work, "relay.log"), "w")
proc = subprocess.Popen(["taskset", "-c", "0", server, "--addr", "127.0.0.1", "--port", str(port),
                         "--tls-port", "0", "--stun-port", "0", "--dist", "/nonexistent",
                         "--room-capacity", "2", "--data-dir", os.path.join(work, "relay-data")],
                        env=env, stdout=log, stderr=log)
time.sleep(1.0)

def rss():
    for line in open(f"/proc/{proc.pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

def connect():
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return s

def send(s, text):
    data = text.encode()
    mask = os.urandom(4)
    n = len(data)
    hdr = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n))
    s.sendall(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        assert chunk
        buf += chunk
    return buf

def recv(s):
    while True:
        b0, b1 = recv_exact(s, 2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", recv_exact(s, 2))[0]
        elif n == 127:
            n = struct.unpack(">Q", recv_exact(s, 8))[0]
        payload = recv_exact(s, n)
        if b0 & 0x0F == 0x1:
            return json.loads(payload)

def sdp(size):
    lines, out = ["v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-"], []
    while sum(len(l) + 2 for l in lines) < size:
        lines.append("a=rtcp-fb:%d nack pli goog-remb transport-cc %d" % (random.randint(96, 127), len(lines)))
    return "\r\n".join(lines) + "\r\n"

try:
  socks = []
  warm = [connect() for _ in range(16)]
  for s in warm:
      s.close()
  time.sleep(0.5)
  base = rss()
  for i in range(pairs):
      a, b = connect(), connect()
      send(a, json.dumps({"type": "join", "room": f"r{i}"})); recv(a)
      send(b, json.dumps({"type": "join", "room": f"r{i}"})); recv(b); recv(a)  # peer-joined
      socks.append((a, b))
  time.sleep(1.0)
  joined = rss()
  for a, b in socks:
      send(a, json.dumps({"type": "offer", "sdp": sdp(5800)})); recv(b)
      send(b, json.dumps({"type": "answer", "sdp": sdp(5800)})); recv(a)
      for k in range(10):
          cand = {"candidate": f"candidate:{k} 1 udp 2122260223 192.168.1.{k} 5{k}000 typ host generation 0 ufrag abcd network-id 1",
                  "sdpMid": "0", "sdpMLineIndex": 0}
          send(a, json.dumps({"type": "candidate", "candidate": cand})); recv(b)
          send(b, json.dumps({"type": "candidate", "candidate": cand})); recv(a)
  time.sleep(1.0)
  called = rss()
  n = 2 * pairs
  print(f"{os.path.basename(server)}: base {base} KiB; per socket joined {(joined - base) / n:.1f} KiB, "
        f"after a call's signaling {(called - base) / n:.1f} KiB")
finally:
  proc.terminate()
  proc.wait()
