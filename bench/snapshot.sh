#!/usr/bin/env bash
# zcopy serve with and without --snapshot-band, side by side in one run: 1 KiB, 16 KiB,
# 64 KiB and 256 KiB files over loopback, wrk -t1 -c50, server on CPU 0 and wrk on CPU 1:
# requests/s and requests per server CPU-second. Bounded in time.
# Usage: bench/snapshot.sh [WRK_SECONDS] [BAND]   (defaults 5, 1-1G: every file)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
band=${2:-1-1G}
cargo build --release -q -p zcopy-cli
zcopy=$PWD/target/release/zcopy
work=$(mktemp -d "${TMPDIR:-/tmp}/zcopy-snap.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/www"
for s in 1 16 64 256; do head -c $((s * 1024)) /dev/urandom > "$work/www/${s}k.bin"; done
taskset -c 0 "$zcopy" -q serve "$work/www" --listen 127.0.0.1:18095 --workers 1 ${ZCOPY_ARGS:-} &
pids+=($!)
taskset -c 0 "$zcopy" -q serve "$work/www" --listen 127.0.0.1:18096 --workers 1 --snapshot-band "$band" ${ZCOPY_ARGS:-} &
pids+=($!)
sleep 1
cpu() { awk -v hz="$(getconf CLK_TCK)" '{print ($14+$15)/hz}' "/proc/$1/stat"; }
printf '%-9s %-6s %10s %12s\n' file server 'req/s' 'req/CPU-s'
for f in 1k 16k 64k 256k; do
  for i in 0 1; do curl -s -o /dev/null "http://127.0.0.1:1809$((5 + i))/$f.bin"; done
  sleep 0.3
  for i in 0 1; do
    pid=${pids[$i]} port=1809$((5 + i)) name=plain
    [ $i = 1 ] && name=snapshot
    c0=$(cpu "$pid")
    out=$(taskset -c 1 wrk -t1 -c50 -d"${secs}s" --timeout 5s "http://127.0.0.1:$port/$f.bin")
    c1=$(cpu "$pid")
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    printf '%-9s %-8s %10.0f %12.0f\n' $f $name "$rps" "$(echo "$rps * $secs / ($c1 - $c0)" | bc -l)"
  done
done
