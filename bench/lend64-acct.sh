#!/usr/bin/env bash
# Per-request accounting of lent 64 KiB responses (LEND_KIB) over loopback: each
# server (NAME=BIN[,VAR=VALUE...][,uring]) measured in alternating rounds of wrk -t1
# -c50 (CPU 1; servers on CPU 0, one worker), with `perf stat -p` on the server:
# task-clock per request, and per request the splices that returned ERESTARTSYS
# (task work pending at their first check: restarted by the kernel), those that
# stopped after their first batch of 16 pipe buffers (task work pending between
# batches: the response's last page goes in another splice), all splices, and
# io_uring_enter calls.
# Prints one line per server and round, then each server's median task-clock and
# the median of its per-round ratios to the first server.
# Usage: bench/lend64-acct.sh ROUNDS SECS NAME=BIN[,VAR=VALUE...][,uring] ...
# e.g. bench/lend64-acct.sh 7 5 epoll=$B uring=$B,uring
# Needs perf with the syscalls tracepoints (root). Everything listens on 127.0.0.1,
# is bounded in time and stops by itself.
set -euo pipefail
rounds=$1; secs=$2; shift 2
kib=${LEND_KIB:-64}; f=${kib}k.bin; whole=$((kib << 10))
. "$(dirname "$0")/lib/work.sh"
bench_work lend64-acct
mkdir -p "$work/www"
chmod 755 "$work" "$work/www"
head -c "$whole" /dev/urandom > "$work/www/$f"
chmod 644 "$work/www/$f"
declare -A port pid
names=()
i=1
for spec in "$@"; do
  n=${spec%%=*}
  IFS=, read -ra parts <<< "${spec#*=}"
  envs=(); io=()
  for x in "${parts[@]:1}"; do
    if [[ $x == uring ]]; then io=(--io uring); else envs+=("$x"); fi
  done
  port[$n]=$((18480 + i)); i=$((i + 1)); names+=("$n")
  env "${envs[@]}" taskset -c 0 "${parts[0]}" -q serve "$work/www" --listen "127.0.0.1:${port[$n]}" \
    --workers 1 "${io[@]}" > "$work/$n.out" 2>&1 &
  pids+=($!); pid[$n]=$!
done
sleep 1
for n in "${names[@]}"; do   # warm up: snapshots made, templates filled
  curl -s -o /dev/null "http://127.0.0.1:${port[$n]}/$f"; sleep 0.3
  curl -s "http://127.0.0.1:${port[$n]}/$f" | cmp -s - "$work/www/$f" || { echo "$n: wrong bytes" >&2; exit 1; }
done
# A response is its head (a few hundred bytes, its own pipe buffer) and body: a
# splice that stops after its first batch returns more than half of it but less
# than the body (the rest is a second, short splice, not counted here).
declare -A clock
for r in $(seq "$rounds"); do
  for n in "${names[@]}"; do
    perf stat -x, -p "${pid[$n]}" -o "$work/stat" -e task-clock \
      -e syscalls:sys_exit_splice --filter 'ret == -512' \
      -e syscalls:sys_exit_splice --filter "ret > $((whole / 2)) && ret < $whole" \
      -e syscalls:sys_exit_splice -e syscalls:sys_enter_io_uring_enter -- sleep "$secs" &
    pp=$!
    out=$(taskset -c 1 wrk -t1 -c50 -d"${secs}s" "http://127.0.0.1:${port[$n]}/$f")
    wait "$pp"
    req=$(echo "$out" | awk '/requests in/ {print $1}')
    line=$(awk -F, -v req="$req" '$1 ~ /^[0-9.]+$/ {v[i++] = $1}
      END {printf "%.2f %.3f %.3f %.3f %.3f", v[0] * 1000 / req, v[1] / req, v[2] / req, v[3] / req, v[4] / req}' "$work/stat")
    read -r us restart part splice enter <<< "$line"
    clock[$n]+="$us "
    printf '%s round %s: %.0f req/s, %s us task-clock, per request: %s restarted, %s split, %s splices, %s io_uring_enter\n' \
      "$n" "$r" "$(echo "$req / $secs" | bc -l)" "$us" "$restart" "$part" "$splice" "$enter"
  done
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
pairmed() { paste <(echo "$1" | tr ' ' '\n' | grep .) <(echo "$2" | tr ' ' '\n' | grep .) | awk '{print $1 / $2}' | median; }
echo
for n in "${names[@]}"; do
  printf '%s: median %.2f us task-clock per request, %.3f x %s (median of per-round ratios)\n' \
    "$n" "$(echo "${clock[$n]}" | median)" "$(pairmed "${clock[$n]}" "${clock[${names[0]}]}")" "${names[0]}"
done
