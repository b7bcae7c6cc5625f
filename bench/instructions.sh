#!/usr/bin/env bash
# User-space instructions per request of `zcopy serve` (epoll driver, 1 worker) for
# HTTP/1.1 keep-alive GETs of a cached 1 KiB file: the whole server under callgrind,
# once answering 1,000 requests and once 5,000 (after the same warm-up), and the
# difference divided by 4,000, so start-up and shutdown cancel out. Instruction
# counts do not depend on the load of a shared machine, as req/s does, so two
# builds compare in one run: give each binary as an argument (default: this
# worktree's release build). Requests come from a small client (python3, 10
# connections, wrk's request: `GET /1k.bin HTTP/1.1` and Host only).
#
# Usage: bench/instructions.sh [BINARY...]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib/work.sh
for t in valgrind python3 curl taskset; do
  command -v "$t" >/dev/null || { echo "bench/instructions.sh needs $t" >&2; exit 2; }
done
if [ $# -eq 0 ]; then
  cargo build --release -q -p zcopy-cli
  set -- "$PWD/target/release/zcopy"
fi
bench_work instr
mkdir -p "$work/www"
head -c 1024 /dev/urandom > "$work/www/1k.bin"
cat > "$work/client.py" <<'PY'
import socket, sys, threading
port, n, c = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
req = f"GET /1k.bin HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
bad = []
def run(k):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    for _ in range(k):
        s.sendall(req)
        while b"\r\n\r\n" not in buf:
            d = s.recv(65536)
            if not d: bad.append("eof"); return
            buf += d
        head, _, buf = buf.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"): bad.append(head[:40])
        cl = int([l.split(b":")[1] for l in head.split(b"\r\n")
                  if l.lower().startswith(b"content-length:")][0])
        while len(buf) < cl:
            d = s.recv(65536)
            if not d: bad.append("eof"); return
            buf += d
        buf = buf[cl:]
    s.close()
ts = [threading.Thread(target=run, args=(n // c,)) for _ in range(c)]
[t.start() for t in ts]; [t.join() for t in ts]
if bad: print("bad answers:", len(bad), bad[:3], file=sys.stderr); sys.exit(1)
PY
port=18391
# Instructions of one server run answering 300 warm-up requests and then $2, into
# $work/count (run in this shell, not in $(...), so its pid reaches the exit trap).
run() { # binary requests
  taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
    "$1" -q serve "$work/www" --listen "127.0.0.1:$port" --workers 1 --io epoll \
    > "$work/cg.log" 2>&1 &
  vp=$!
  pids+=("$vp")
  for _ in $(seq 150); do
    curl -sf -o /dev/null "http://127.0.0.1:$port/1k.bin" && break
    sleep 0.2
  done
  taskset -c 1 python3 "$work/client.py" "$port" 300 10
  taskset -c 1 python3 "$work/client.py" "$port" "$2" 10
  kill "$vp"; wait "$vp" 2>/dev/null || true
  pids=()   # reaped: its pid may name another process by the exit
  grep "Collected" "$work/cg.log" | awk '{gsub(",", "", $4); print $4}' > "$work/count"
}
for bin in "$@"; do
  run "$bin" 1000
  a=$(cat "$work/count")
  run "$bin" 5000
  b=$(cat "$work/count")
  echo "$bin: $(( (b - a) / 4000 )) instructions per request"
done
