#!/usr/bin/env bash
# A release `zcopy` whose code is laid out by BOLT (llvm-bolt) from a profile of its own
# hot path: the code a request runs packed together, the rest moved away. It is the same
# code (BOLT moves blocks and functions, it does not change what they do), and it runs
# fewer cache lines a request: measured on a 1 KiB keep-alive GET, 372 -> 235 hot
# instruction cache lines and user time 0.87 -> 0.67 µs a request (bench/results/io.md).
#
# Steps: a release build linked with --emit-relocs (BOLT needs them; its own target
# directory, target/bolt-build), an instrumented copy of it serving a scratch directory
# while a small client (python3) asks for what a static site is asked (GET and HEAD of
# small and medium files, ranges, conditional requests, a listing, a miss) on the epoll
# and io_uring drivers, then the layout from those counts (exact: no sampling, so no
# hardware counters are needed). The profile is of the small-file path; anything else
# runs as fast as in a plain build.
#
# Needs llvm-bolt (Debian: `apt install bolt-19`), python3 and curl.
# Usage: scripts/bolt.sh [OUT]     (default target/bolt/zcopy)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/bolt/zcopy}
bolt=$(command -v llvm-bolt || command -v llvm-bolt-19 || ls /usr/lib/llvm-*/bin/llvm-bolt 2>/dev/null | tail -1 || true)
if [ -z "$bolt" ]; then
  echo "scripts/bolt.sh needs llvm-bolt (Debian: apt install bolt-19)" >&2
  exit 2
fi
# Its own directory, where it finds its runtime (lib/) and merge-fdata.
bolt=$(readlink -f "$bolt")
for t in python3 curl; do
  command -v "$t" >/dev/null || { echo "scripts/bolt.sh needs $t" >&2; exit 2; }
done
RUSTFLAGS="${RUSTFLAGS:-} -C link-arg=-Wl,--emit-relocs" CARGO_TARGET_DIR=target/bolt-build \
  cargo build --release -q -p zcopy-cli
bin=target/bolt-build/release/zcopy
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$work/www/dir"
head -c 1024 /dev/urandom > "$work/www/1k.bin"
head -c 16384 /dev/urandom > "$work/www/16k.bin"
head -c 65536 /dev/urandom > "$work/www/64k.bin"
python3 -c 'print("<!doctype html><title>t</title>" + "<p>zcopy</p>" * 300)' > "$work/www/index.html"
cat > "$work/client.py" <<'PY'
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
asks = [
    b"GET /1k.bin HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET /16k.bin HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET /64k.bin HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\nAccept-Encoding: gzip, br\r\n\r\n",
    b"HEAD /1k.bin HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET /64k.bin HTTP/1.1\r\nHost: h\r\nRange: bytes=100-5000\r\n\r\n",
    b"GET /1k.bin HTTP/1.1\r\nHost: h\r\nIf-None-Match: \"x\"\r\n\r\n",
    b"GET /dir/ HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET /missing HTTP/1.1\r\nHost: h\r\n\r\n",
]
# Weighted toward the common case: a plain GET of a small file.
plan = [0] * 12 + [1, 2, 2, 3, 4, 5, 6, 7, 8]
s = socket.create_connection(("127.0.0.1", port))
buf = b""
for i in range(n):
    req = asks[plan[i % len(plan)]]
    s.sendall(req)
    while b"\r\n\r\n" not in buf:
        d = s.recv(1 << 20)
        if not d: sys.exit("closed early")
        buf += d
    head, _, buf = buf.partition(b"\r\n\r\n")
    if req.startswith(b"HEAD"): continue
    cl = [l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
    n_body = int(cl[0].split(b":")[1]) if cl else 0
    while len(buf) < n_body:
        d = s.recv(1 << 20)
        if not d: sys.exit("closed early")
        buf += d
    buf = buf[n_body:]
PY
rm -f "$work/prof.fdata"
"$bolt" "$bin" -instrument -instrumentation-file="$work/prof.fdata" \
  -instrumentation-file-append-pid -o "$work/zcopy.inst" > "$work/bolt-instrument.log" 2>&1 \
  || { tail -5 "$work/bolt-instrument.log" >&2; exit 1; }
port=18791
for io in epoll uring; do
  "$work/zcopy.inst" -q serve "$work/www" --listen "127.0.0.1:$port" --workers 1 --io "$io" \
    > "$work/serve-$io.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do
    curl -sf -o /dev/null "http://127.0.0.1:$port/1k.bin" && break
    sleep 0.1
  done
  python3 "$work/client.py" "$port" 20000
  kill "$pid"
  wait "$pid" || true
  pid=
  port=$((port + 1))
done
# One profile per process (-append-pid); BOLT merges what it is given.
profiles=("$work"/prof.fdata.*)
[ -e "${profiles[0]}" ] || { echo "scripts/bolt.sh: the instrumented server wrote no profile" >&2; exit 1; }
merge=$(dirname "$bolt")/merge-fdata
"$merge" "${profiles[@]}" > "$work/prof.fdata"
mkdir -p "$(dirname "$out")"
"$bolt" "$bin" -o "$out" -data="$work/prof.fdata" -reorder-blocks=ext-tsp \
  -reorder-functions=hfsort+ -split-functions -split-all-cold -split-eh -icf=1 \
  > "$work/bolt.log" 2>&1 || { cat "$work/bolt.log" >&2; exit 1; }
echo "$out: laid out by BOLT from $(basename "$bin")'s profile ($(grep -c . "$work/prof.fdata") branch records)"
