#!/usr/bin/env bash
# zcopy serve with --snapshot-band off and with a band (default: the default band),
# side by side in one run, rounds alternating between the two: files from 1 KiB to
# 4 MiB over loopback, wrk -t1 -c50, servers on CPU 0 and wrk on CPU 1: requests/s and
# requests per server CPU-second, the median of the rounds, and their ratios.
# Bounded in time: sizes x rounds x 2 x WRK_SECONDS.
# Usage: bench/snapshot.sh [WRK_SECONDS] [ROUNDS] [BAND]   (defaults 3, 3, the default band)
# SNAP_SIZES="16 32 64" picks the file sizes (KiB); ZCOPY_ARGS adds flags to both servers.
# The clients connect to 127.0.0.1: a loopback peer, which has a band of its own
# (DEFAULT_BAND_LOOPBACK) unless BAND is given.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib/work.sh
secs=${1:-3}
rounds=${2:-3}
band=${3:-}
for t in wrk curl taskset bc; do command -v $t >/dev/null || { echo "needs $t" >&2; exit 1; }; done
cargo build --release -q -p zcopy-cli
zcopy=$PWD/target/release/zcopy
bench_work snap
mkdir -p "$work/www"
sizes=${SNAP_SIZES:-"1 8 16 32 64 128 256 512 1024 4096"}
for s in $sizes; do head -c $((s * 1024)) /dev/urandom > "$work/www/${s}k.bin"; done
taskset -c 0 "$zcopy" -q serve "$work/www" --listen 127.0.0.1:18095 --workers 1 --snapshot-band off ${ZCOPY_ARGS:-} &
pids+=($!)
taskset -c 0 "$zcopy" -q serve "$work/www" --listen 127.0.0.1:18096 --workers 1 ${band:+--snapshot-band "$band"} ${ZCOPY_ARGS:-} &
pids+=($!)
sleep 1
cpu() { awk -v hz="$(getconf CLK_TCK)" '{print ($14+$15)/hz}' "/proc/$1/stat"; }
median() { sort -n | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
echo "band: ${band:-default}; $rounds rounds of ${secs} s per file and server"
printf '%-6s %12s %12s %12s %12s %8s %8s\n' file 'off req/s' 'off req/CPUs' 'band req/s' 'band req/CPUs' 'rps x' 'CPU x'
for s in $sizes; do
  f=${s}k.bin
  # Twice each: the second request of a file in the band queues its snapshot.
  for i in 0 1; do for _ in 1 2; do curl -s -o /dev/null "http://127.0.0.1:1809$((5 + i))/$f"; done; done
  sleep 0.5
  declare -A r=() c=()
  for _ in $(seq "$rounds"); do
    for i in 0 1; do
      pid=${pids[$i]} port=1809$((5 + i))
      c0=$(cpu "$pid")
      out=$(taskset -c 1 wrk -t1 -c50 -d"${secs}s" --timeout 5s "http://127.0.0.1:$port/$f")
      c1=$(cpu "$pid")
      rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
      r[$i]+="$rps "
      c[$i]+="$(echo "$rps * $secs / ($c1 - $c0)" | bc -l) "
    done
  done
  r0=$(echo ${r[0]} | tr ' ' '\n' | median); r1=$(echo ${r[1]} | tr ' ' '\n' | median)
  c0=$(echo ${c[0]} | tr ' ' '\n' | median); c1=$(echo ${c[1]} | tr ' ' '\n' | median)
  printf '%-6s %12.0f %12.0f %12.0f %12.0f %8.2f %8.2f\n' "${s}k" "$r0" "$c0" "$r1" "$c1" \
    "$(echo "$r1 / $r0" | bc -l)" "$(echo "$c1 / $c0" | bc -l)"
  unset r c
done
