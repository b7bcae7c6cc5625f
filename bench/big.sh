#!/usr/bin/env bash
# Large bodies, the two I/O drivers side by side: a cached file (1 GiB by default)
# downloaded with curl over loopback from `zcopy serve --io epoll` and `--io uring`,
# each server pinned to CPU 0 (one worker), curl to CPU 1. Rounds alternate between
# the servers so drift on a shared machine hits both. Reports the server's CPU-seconds
# (on-CPU time of every thread, from /proc/PID/task/*/schedstat, in ns: utime+stime
# come in 10 ms ticks, a tenth of the difference being measured) per GB and the
# throughput, per run and the median; writes bench/results/big.md.
#
# Usage: bench/big.sh [RUNS] [MIB]      (defaults: 3 runs, 1024 MiB)
# ZCOPY=/path/to/zcopy uses that binary instead of building target/release/zcopy;
# BASE=/path/to/other/zcopy adds that binary's io_uring driver as "uring-base"
# (a before/after comparison in the same run).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib/work.sh
runs=${1:-3}
mib=${2:-1024}
for t in curl taskset bc; do
  command -v "$t" >/dev/null || { echo "bench/big.sh needs $t" >&2; exit 2; }
done
if [ -z "${ZCOPY:-}" ]; then
  cargo build --release -q -p zcopy-cli
  ZCOPY=$PWD/target/release/zcopy
fi
bench_work big
mkdir -p "$work/www"
head -c $((mib << 20)) /dev/urandom > "$work/www/big.bin"
cat "$work/www/big.bin" > /dev/null   # warm the page cache

servers=(epoll uring)
declare -A port pid bin io
port[epoll]=18191
port[uring]=18192
port[uring-base]=18193
bin[epoll]=$ZCOPY; io[epoll]=epoll
bin[uring]=$ZCOPY; io[uring]=uring
if [ -n "${BASE:-}" ]; then
  servers+=(uring-base)
  bin[uring-base]=$BASE; io[uring-base]=uring
fi
for s in "${servers[@]}"; do
  taskset -c 0 "${bin[$s]}" -q serve "$work/www" --listen "127.0.0.1:${port[$s]}" \
    --workers 1 --io "${io[$s]}" > "$work/$s.out" 2>&1 &
  pid[$s]=$!
  pids+=($!)
done
for s in "${servers[@]}"; do
  for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:${port[$s]}/" && break; sleep 0.1; done
done
cpu() { cat /proc/"$1"/task/*/schedstat | awk '{s+=$1} END{printf "%.6f", s/1e9}'; }

declare -A per gbps
for r in $(seq "$runs"); do
  for s in "${servers[@]}"; do
    c0=$(cpu "${pid[$s]}")
    t0=$(date +%s.%N)
    got=$(taskset -c 1 curl -s --max-time 300 -o /dev/null -w '%{size_download}' "http://127.0.0.1:${port[$s]}/big.bin")
    t1=$(date +%s.%N)
    c1=$(cpu "${pid[$s]}")
    [ "$got" = $((mib << 20)) ] || { echo "$s: got $got bytes" >&2; exit 1; }
    gb=$(echo "$got / 1000000000" | bc -l)
    per[$s.$r]=$(printf '%.3f' "$(echo "($c1 - $c0) / $gb" | bc -l)")
    gbps[$s.$r]=$(printf '%.2f' "$(echo "$gb / ($t1 - $t0)" | bc -l)")
  done
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
mkdir -p bench/results
{
  echo "# Large body, epoll vs io_uring driver: $mib MiB over loopback, $(uname -r), $(nproc) cores"
  echo
  echo "One worker on CPU 0, curl on CPU 1, page cache warm, $runs runs alternating."
  echo
  echo "| driver | server CPU-s per GB (each run) | median | GB/s (each run) |"
  echo "|---|---|---|---|"
  for s in "${servers[@]}"; do
    cs=(); gs=()
    for r in $(seq "$runs"); do cs+=("${per[$s.$r]}"); gs+=("${gbps[$s.$r]}"); done
    echo "| $s | ${cs[*]} | $(median "${cs[@]}") | ${gs[*]} |"
  done
} | tee bench/results/big.md
