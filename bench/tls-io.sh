#!/usr/bin/env bash
# HTTPS on the two event loops side by side: zcopy serve --io epoll and --io uring,
# one HTTPS listener each (userspace TLS where the kernel has no tls ULP; kTLS is the
# epoll driver's only), 1 worker, pinned to CPU 0; h2load --h1 (nghttp2-client) on
# CPU 1 with keep-alive connections. Rounds alternate between the drivers so drift on
# a shared machine hits both. Reports requests/s and requests per server CPU-second
# (utime+stime of the server process, all threads, from /proc) for 1 KiB and 1 MiB.
#
# Usage: bench/tls-io.sh [REQUESTS_1K] [ROUNDS] (1 MiB runs REQUESTS_1K/20 requests)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib/work.sh
n1k=${1:-20000}
rounds=${2:-3}
n1m=$((n1k / 20))
for t in h2load taskset openssl; do
  command -v "$t" >/dev/null || { echo "bench/tls-io.sh needs $t" >&2; exit 2; }
done
cargo build --release -q -p zcopy-cli
zcopy=$PWD/target/release/zcopy
bench_work tls-io
mkdir -p "$work/www"
head -c 1024 /dev/urandom > "$work/www/1k.bin"
head -c 1048576 /dev/urandom > "$work/www/1m.bin"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -keyout "$work/key.pem" -out "$work/cert.pem" -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 2>/dev/null
declare -A port pid
port[epoll]=18191
port[uring]=18192
for io in epoll uring; do
  taskset -c 0 "$zcopy" serve "$work/www" --listen "https://127.0.0.1:${port[$io]}" \
    --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" --workers 1 --io "$io" \
    > "$work/$io.out" 2>&1 &
  pid[$io]=$!
  pids+=($!)
done
sleep 1
for io in epoll uring; do head -1 "$work/$io.out"; done
tck=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
declare -A rps per
for r in $(seq "$rounds"); do
  for size in 1k 1m; do
    n=$n1k; [ "$size" = 1m ] && n=$n1m
    for io in epoll uring; do
      before=$(cpu "${pid[$io]}")
      out=$(taskset -c 1 h2load --h1 -n "$n" -c 16 -t 1 "https://127.0.0.1:${port[$io]}/$size.bin")
      after=$(cpu "${pid[$io]}")
      ok=$(echo "$out" | awk '/^requests:/ {print $8}')
      [ "$ok" = "$n" ] || { echo "$io $size: $out" >&2; exit 1; }
      r_s=$(echo "$out" | awk '/^finished in/ {print $4}')
      p=$(awk -v n="$n" -v t="$((after - before))" -v hz="$tck" 'BEGIN { printf "%.0f", n / (t / hz) }')
      rps[$io,$size]+="${r_s%.*} "
      per[$io,$size]+="$p "
      echo "round $r $size $io: ${r_s%.*} req/s, $p req per server CPU-s"
    done
  done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }
echo
echo "| size | driver | req/s (median) | req per server CPU-s (median) | uring / epoll |"
echo "|---|---|---|---|---|"
for size in 1k 1m; do
  e=$(echo "${per[epoll,$size]}" | median)
  for io in epoll uring; do
    m=$(echo "${per[$io,$size]}" | median)
    echo "| $size | $io | $(echo "${rps[$io,$size]}" | median) | $m | $(awk -v a="$m" -v b="$e" 'BEGIN { printf "%.2fx", a / b }') |"
  done
done
