#!/usr/bin/env bash
# RFC 9218 priorities (issue 21): a page-like load over one h2c connection
# (bench/h2-priority.py): NLARGE (default 1) large bodies (LARGE_MIB, default 20)
# requested first,
# then N (default 6) small urgent ones (SMALL_KIB, default 50) — sent in the same
# write (AT=once) or once the large body's first DATA frame arrived (AT=started,
# the default). Rounds alternate between the client sending `priority` fields
# (u=5 on the large one, u=0/u=1 on the small ones: the server schedules by
# them) and sending none (the server takes turns a frame each, as before
# priorities). Server: zcopy -q serve, 1 worker, pinned to CPU 0; client on
# CPU 1. Prints the medians: time until the last urgent body ended (from its
# request), time until the large body ended, and the ratios none/prio.
# With --veth (root): server and client in two network namespaces joined by a
# veth pair (198.18.0.0/15, unique names), removed on exit.
# Usage: bench/h2-priority.sh [--veth] [ROUNDS]   (default 15)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib/veth.sh
source bench/lib/work.sh
mode=loopback
if [ "${1:-}" = --veth ]; then mode=veth; shift; fi
rounds=${1:-15}
large_mib=${LARGE_MIB:-20}
small_kib=${SMALL_KIB:-50}
n=${N:-6}
nlarge=${NLARGE:-1}
at=${AT:-started}
if [ -z "${ZCOPY:-}" ]; then
  cargo build --release -q -p zcopy-cli
  ZCOPY=$PWD/target/release/zcopy
fi
bench_atexit() { wait 2>/dev/null; }
bench_work h2prio
mkdir "$work/www"
head -c $((large_mib << 20)) /dev/urandom > "$work/www/large.bin"
for i in $(seq 0 $((n - 1))); do head -c $((small_kib << 10)) /dev/urandom > "$work/www/s$i.css"; done
addr=127.0.0.1
srv=(taskset -c 0)
cli=(taskset -c 1)
if [ $mode = veth ]; then
  veth_up prio-$$- 198.18
  srv=("${in_srv[@]}" taskset -c 0)
  cli=("${in_cli[@]}" taskset -c 1)
fi
port=$(( 20000 + $$ % 20000 ))
"${srv[@]}" "$ZCOPY" -q serve "$work/www" --workers 1 --listen "$addr:$port" &
pids+=($!)
for _ in $(seq 50); do
  "${cli[@]}" bash -c "exec 3<>/dev/tcp/$addr/$port" 2>/dev/null && break
  sleep 0.1
done
"${cli[@]}" python3 bench/h2-priority.py "$addr" "$port" $((large_mib << 20)) $((small_kib << 10)) "$n" alt "$at" "$rounds" "$nlarge" > "$work/out"
python3 - "$work/out" "$mode" "$at" "$nlarge" "$large_mib" "$n" "$small_kib" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
med = {m: [statistics.median(float(r[i]) for r in rows if r[0] == m) for i in (1, 2, 3)] for m in ("prio", "none")}
mode, at, nl, lm, n, sk = sys.argv[2:8]
print(f"{mode}: {nl} x {lm} MiB (u=5) then {n} x {sk} KiB (u=0/1) sent {at}; {len(rows)//2} rounds each (medians)")
print(f"| client sends | first urgent done (ms) | all urgent done (ms) | large done (ms) |")
print(f"|---|---|---|---|")
for m, name in (("none", "no priority (streams take turns)"), ("prio", "priority u=5 / u=0,1")):
    print(f"| {name} | {med[m][2]:.1f} | {med[m][0]:.1f} | {med[m][1]:.1f} |")
r = lambda i: med['none'][i] / med['prio'][i]
print(f"with priorities: first urgent {r(2):.2f}x sooner, all urgent {r(0):.2f}x sooner, large {1/r(1):.2f}x the time")
PY
