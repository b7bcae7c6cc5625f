#!/usr/bin/env bash
# A cold file must not stall other connections: p99 latency of hot 1 KiB requests
# (wrk -c10) while 8 clients download 128 MiB files whose pages were dropped from
# the page cache (dd iflag=nocache → posix_fadvise DONTNEED) just before, compared
# with the all-hot p99; --io epoll vs --io uring (1 worker on CPU 0, clients on
# CPU 1). Bounded: 8 × 128 MiB per run, wrk for WRK_SECONDS.
# Writes bench/results/cold.md.
# Usage: bench/cold.sh [WRK_SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
for t in wrk taskset curl dd; do
  command -v "$t" >/dev/null || { echo "bench/cold.sh needs $t" >&2; exit 2; }
done
cargo build --release -q -p zcopy-cli
zcopy=$PWD/target/release/zcopy
work=$(mktemp -d "${TMPDIR:-/var/tmp}/zcopy-cold.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/www"
head -c 1024 /dev/urandom > "$work/www/1k.bin"
for i in 1 2 3 4 5 6 7 8; do head -c $((128 << 20)) /dev/urandom > "$work/www/cold$i.bin"; done
sync

p99() { awk '$1 == "99%" {print $2}'; }
mkdir -p bench/results
{
echo "# Hot 1 KiB p99 while 8 clients download cold 128 MiB files, $(uname -r), $(nproc) cores"
echo
echo "1 worker on CPU 0, wrk -t1 -c10 and the 8 curl downloads on CPU 1; \`bench/cold.sh $secs\`."
echo
echo "| driver | hot 1 KiB p99, all hot | p99 with 8 cold 128 MiB downloads | req/s during downloads |"
echo "|---|---|---|---|"
port=18100
for io in epoll uring; do
  port=$((port + 1))
  taskset -c 0 "$zcopy" -q serve "$work/www" --listen "127.0.0.1:$port" --workers 1 --io "$io" \
    > "$work/$io.out" 2>&1 &
  pids+=($!)
  sleep 0.5
  hot=$(taskset -c 1 wrk -t1 -c10 -d"${secs}s" --latency "http://127.0.0.1:$port/1k.bin" | p99)
  for i in 1 2 3 4 5 6 7 8; do dd if="$work/www/cold$i.bin" iflag=nocache count=0 status=none; done
  dl=()
  for i in 1 2 3 4 5 6 7 8; do
    taskset -c 1 curl -s -o /dev/null --max-time 120 "http://127.0.0.1:$port/cold$i.bin" &
    dl+=($!)
  done
  out=$(taskset -c 1 wrk -t1 -c10 -d"${secs}s" --latency "http://127.0.0.1:$port/1k.bin")
  for p in "${dl[@]}"; do wait "$p" || true; done
  echo "| $io | $hot | $(echo "$out" | p99) | $(echo "$out" | awk '/Requests\/sec/ {print $2}') |"
done
} | tee bench/results/cold.md
