#!/usr/bin/env bash
# Memory of the snapshot store with 1,000 hot compressible files: zcopy serve with the
# default --snapshot-memory and with a small one, side by side in one run; every file
# asked for with `Accept-Encoding: gzip` until its variant is made, then the server's
# RSS (anonymous, file, shared; the sealed memfds are never mapped, so their pages are
# not in RSS: "held" is their size) and the store's own
# gauges (bytes held, budget, evictions) from /metrics. Bounded in time.
# Usage: bench/snapshot-memory.sh [FILES] [FILE_KIB] [SMALL_BUDGET]   (defaults 1000, 64, 2M)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib/work.sh
files=${1:-1000}
kib=${2:-64}
small=${3:-2M}
for t in curl python3; do command -v $t >/dev/null || { echo "needs $t" >&2; exit 1; }; done
cargo build --release -q -p zcopy-cli
zcopy=$PWD/target/release/zcopy
bench_work snapmem
mkdir -p "$work/www"
python3 - "$work/www" "$files" "$kib" <<'PY'
import sys, random
root, n, kib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for f in range(n):
    random.seed(f)
    out, size = [], 0
    while size < kib * 1024:
        line = (f"export function h{f}_{len(out)}(req) {{ return {random.randint(0, 99999)} + "
                f"req.query['{random.choice('abcdefgh')}']; }}\n")
        out.append(line); size += len(line)
    open(f"{root}/f{f}.js", "w").write("".join(out)[:kib * 1024])
PY
"$zcopy" -q serve "$work/www" --listen 127.0.0.1:18101 --workers 1 --metrics 127.0.0.1:18111 &
pids+=($!)
"$zcopy" -q serve "$work/www" --listen 127.0.0.1:18102 --workers 1 --metrics 127.0.0.1:18112 --snapshot-memory "$small" &
pids+=($!)
sleep 1
urls() { for f in $(seq 0 $((files - 1))); do printf 'url = "http://127.0.0.1:%s/f%s.js"\noutput = /dev/null\n' "$1" "$f"; done; }
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m {print $2}'; }
last=""
deadline=$((SECONDS + 120))
for i in 0 1; do
  port=1810$((1 + i)) mport=1811$((1 + i))
  # Until every variant is made (or, with the small budget, the store is full and evicting).
  for round in $(seq 20); do
    urls $port | curl -s -S -Z --no-progress-meter --parallel-max 8 -H 'Accept-Encoding: gzip' -K - >/dev/null
    gz=$(curl -s -o /dev/null -H 'Accept-Encoding: gzip' -w '%header{content-encoding}' "http://127.0.0.1:$port/f$((files - 1)).js")
    [ "$gz" = gzip ] && [ "$(metric $mport zcopy_snapshot_misses_total)" = "$last" ] 2>/dev/null && break
    last=$(metric $mport zcopy_snapshot_misses_total)
    [ $SECONDS -lt $deadline ] || break
    sleep 0.5
  done
done
total=$((files * kib))
printf 'files: %s × %s KiB = %s MiB of JS\n' "$files" "$kib" "$((total / 1024))"
printf '%-10s %12s %12s %10s %10s %10s %10s %10s\n' budget 'budget MiB' 'held MiB' evictions 'RSS MiB' 'anon MiB' 'file MiB' 'shmem MiB'
for i in 0 1; do
  pid=${pids[$i]} mport=1811$((1 + i)) name=default
  [ $i = 1 ] && name=$small
  kb() { awk -v k="$1:" '$1 == k {printf "%.1f", $2 / 1024}' "/proc/$pid/status"; }
  printf '%-10s %12.1f %12.1f %10s %10s %10s %10s %10s\n' "$name" \
    "$(echo "$(metric $mport zcopy_snapshot_budget_bytes) / 1048576" | bc -l)" \
    "$(echo "$(metric $mport zcopy_snapshot_bytes) / 1048576" | bc -l)" \
    "$(metric $mport zcopy_snapshot_evictions_total)" \
    "$(kb VmRSS)" "$(kb RssAnon)" "$(kb RssFile)" "$(kb RssShmem)"
done
