#!/usr/bin/env bash
# zcopy serve's two I/O drivers side by side: --io epoll vs --io uring, one worker
# each, server pinned to CPU 0 and wrk (-c50) to CPU 1, loopback, page cache warm.
# Runs alternate (epoll, uring, epoll, uring, ...) so drift on a shared machine hits
# both. Reports requests/s and requests per server CPU-second (utime+stime from
# /proc/PID/stat before/after) for 1 KiB and 64 KiB files; writes bench/results/io.md.
# Usage: bench/io.sh [WRK_SECONDS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
rounds=${2:-2}
for t in wrk taskset bc; do
  command -v "$t" >/dev/null || { echo "bench/io.sh needs $t" >&2; exit 2; }
done
cargo build --release -q -p zcopy-cli
zcopy=$PWD/target/release/zcopy
work=$(mktemp -d "${TMPDIR:-/tmp}/zcopy-io.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/www"
head -c 1024 /dev/urandom > "$work/www/1k.bin"
head -c 65536 /dev/urandom > "$work/www/64k.bin"

declare -A port pid
port[epoll]=18091
port[uring]=18092
for io in epoll uring; do
  taskset -c 0 "$zcopy" -q serve "$work/www" --listen "127.0.0.1:${port[$io]}" --workers 1 \
    --io "$io" > "$work/$io.out" 2>&1 &
  pid[$io]=$!
  pids+=($!)
done
sleep 1

cpu() { awk -v hz="$(getconf CLK_TCK)" '{print ($14+$15)/hz}' "/proc/$1/stat"; }
declare -A reqs cpus
for f in 1k.bin 64k.bin; do
  for io in epoll uring; do reqs[$io.$f]=0; cpus[$io.$f]=0; done
  for _ in $(seq "$rounds"); do
    for io in epoll uring; do
      c0=$(cpu "${pid[$io]}")
      out=$(taskset -c 1 wrk -t1 -c50 -d"${secs}s" "http://127.0.0.1:${port[$io]}/$f")
      c1=$(cpu "${pid[$io]}")
      if echo "$out" | grep -qE 'Non-2xx|Socket errors'; then
        echo "warning: $io $f: $(echo "$out" | grep -E 'Non-2xx|Socket errors')" >&2
      fi
      n=$(echo "$out" | awk '/requests in/ {print $1}')
      reqs[$io.$f]=$((${reqs[$io.$f]} + n))
      cpus[$io.$f]=$(echo "${cpus[$io.$f]} + $c1 - $c0" | bc -l)
    done
  done
done

mkdir -p bench/results
{
echo "# zcopy serve --io epoll vs --io uring, $(uname -r), $(nproc) cores"
echo
echo "1 worker on CPU 0, wrk -t1 -c50 on CPU 1, loopback; \`bench/io.sh $secs $rounds\` ($rounds alternating rounds of ${secs}s each)."
echo
echo "| file | epoll req/s | uring req/s | epoll req/CPU-s | uring req/CPU-s | uring/epoll req/CPU-s |"
echo "|---|---|---|---|---|---|"
total=$((secs * rounds))
for f in 1k.bin 64k.bin; do
  e_rps=$(echo "${reqs[epoll.$f]} / $total" | bc -l)
  u_rps=$(echo "${reqs[uring.$f]} / $total" | bc -l)
  e_cpu=$(echo "${reqs[epoll.$f]} / ${cpus[epoll.$f]}" | bc -l)
  u_cpu=$(echo "${reqs[uring.$f]} / ${cpus[uring.$f]}" | bc -l)
  printf '| %s | %.0f | %.0f | %.0f | %.0f | %.2f |\n' "$f" "$e_rps" "$u_rps" "$e_cpu" "$u_cpu" \
    "$(echo "$u_cpu / $e_cpu" | bc -l)"
done
} | tee bench/results/io.md
