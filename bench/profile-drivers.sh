#!/usr/bin/env bash
# Where each zcopy driver's CPU goes for one hot file over loopback: `perf record -g`
# of the server (epoll, then --io uring; one worker, pinned to CPU 0) while hload
# -t1 -c50 on CPU 1 keeps it saturated, then the top entries of `perf report
# --children` per driver, and samples per 1,000 requests for a few symbols that
# split the receive from the send (recvfrom against the ring's receive task work;
# tee and splice). The figures behind issue 19's "io_uring's extra is its receive"
# (bench/results/peers.md, 2026-12-03 lend64e).
# Usage: bench/profile-drivers.sh ZCOPY_BIN [SECS] [KIB]   (HLOAD=path, default
# target/release/hload; KEEP=dir keeps the perf data there)
# Root (perf); everything listens on 127.0.0.1, is bounded in time and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib/work.sh
bin=$1 secs=${2:-5} kib=${3:-64}
hload=${HLOAD:-target/release/hload}
for t in perf taskset curl; do
  command -v "$t" >/dev/null || { echo "bench/profile-drivers.sh needs $t" >&2; exit 2; }
done
[ -x "$hload" ] || { echo "no hload at $hload (cargo build --release -p zcopy-bench --bin hload)" >&2; exit 2; }
bench_work profile
mkdir -p "$work/www"
head -c $((kib << 10)) /dev/urandom > "$work/www/f.bin"
echo "$(uptime | sed 's/.*load/load/'); $bin; ${kib} KiB; ${secs} s a driver"
port=18930
for io in epoll uring; do
  port=$((port + 1))
  taskset -c 0 "$bin" -q serve "$work/www" --listen "127.0.0.1:$port" --workers 1 --io "$io" \
    > "$work/$io.out" 2>&1 &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/f.bin" && break; sleep 0.1; done
  curl -s "http://127.0.0.1:$port/f.bin" | cmp -s - "$work/www/f.bin" || { echo "$io: wrong bytes" >&2; exit 1; }
  perf record -F 4000 -g -o "$work/$io.data" -p "$pid" -- sleep "$secs" 2> /dev/null &
  rec=$!
  out=$(taskset -c 1 "$hload" -t 1 -c 50 -d "$secs" --len $((kib << 10)) "http://127.0.0.1:$port/f.bin")
  wait "$rec"
  kill "$pid"
  req=$(echo "$out" | awk '/requests in/ {print $1}')
  echo
  echo "== $io: $req requests in ${secs} s (hload: $(echo "$out" | grep 'client CPU'))"
  report=$(perf report -i "$work/$io.data" --children --stdio -g none --sort sym --percent-limit 0.3 \
    2> /dev/null | grep -v '^#' | grep . || true)
  total=$(perf report -i "$work/$io.data" --stdio --no-children -g none --sort comm -F sample 2> /dev/null |
    awk '!/^#/ && NF {s += $1} END {print s + 0}')
  echo "$total samples; the top of perf report --children (by symbol):"
  echo "$report" | head -20
  echo "samples per 1,000 requests (children) of the receive and the send:"
  for sym in __x64_sys_recvfrom tctx_task_work io_recv __x64_sys_tee __x64_sys_splice \
    __x64_sys_epoll_wait __x64_sys_io_uring_enter; do
    pct=$(echo "$report" | awk -v s="$sym" '$NF == s {sub("%", "", $1); print $1; exit}')
    [ -n "$pct" ] || continue
    printf '  %-26s %6s%%  %6.2f\n' "$sym" "$pct" "$(echo "$pct * $total / 100 * 1000 / $req" | bc -l)"
  done
done
[ -z "${KEEP:-}" ] || { mkdir -p "$KEEP"; cp "$work"/*.data "$KEEP"/; }
