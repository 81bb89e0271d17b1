#!/usr/bin/env bash
# Issue 4's figure: a node's RSS with N listeners (loadgen) plus one socket
# that never reads, before and after M messages. Loopback only; stops by
# itself. Usage: bench/slow-reader.sh [LISTENERS MESSAGES RATE SIZE]
#   bench/slow-reader.sh 10000 1000 20 256    # 10M deliveries
#   bench/slow-reader.sh 100 10000 500 1024   # the stalled socket is evicted
set -euo pipefail
cd "$(dirname "$0")/.."
L=${1:-10000}; M=${2:-1000}; R=${3:-20}; SZ=${4:-256}
cargo build --release -q
cargo build --release -q --manifest-path loadgen/Cargo.toml
work=$(mktemp -d); trap 'kill $PID $SP 2>/dev/null; rm -rf "$work"' EXIT
./target/release/watercooler --bind 127.0.0.1 --port 0 --secure-port 0 >"$work/out" 2>"$work/err" &
PID=$!
for _ in $(seq 50); do grep -q '^listening on http:' "$work/out" && break; sleep 0.1; done
URL=$(sed -n 's#^listening on \(http://.*\)#\1#p' "$work/out")
python3 - "${URL##*:}" $(( M / R + 15 )) >"$work/stalled" <<'PY' &
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET /listen HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
time.sleep(float(sys.argv[2]))  # never read while messages flow
s.settimeout(5)
n = 0
try:
    while True:
        b = s.recv(65536)
        if not b:
            print(f"stalled reader: closed by the node after {n} bytes"); break
        n += len(b)
except OSError as e:
    print(f"stalled reader: still open ({e}) after {n} bytes")
PY
SP=$!
taskset -pc 0 $PID >/dev/null 2>&1 || true
taskset -c 1 loadgen/target/release/loadgen --listen "$URL/listen" --publish "$URL/publish" \
    --listeners "$L" --messages "$M" --rate "$R" --size "$SZ" --server-pid $PID --idle-s 2 \
    --drain-timeout-s 30 | grep -vE '^JSON'
grep VmRSS /proc/$PID/status
wait $SP || true
cat "$work/stalled"
echo "slow listeners closed: $(grep -c 'slow listener closed' "$work/err" || true)"
