#!/usr/bin/env bash
# Large bodies from several servers in alternating rounds, over loopback or across
# a veth pair: each server (NAME=BIN[,VAR=VALUE...][,uring], or NAME=nginx) pinned to
# CPU 0 with one worker, curl on CPU 1; each round downloads the cached file
# (1 GiB by default) DL times from every server in turn. Per server and round: the
# server's CPU-s per GB (utime+stime from /proc/PID/stat), throughput, curl's
# CPU-s per GB, and from `perf stat -p` on the server: task-clock, segments it
# handled (tcp_probe) and skbs it received (netif_receive_skb) in thousands per GB,
# io_uring_enter calls and page faults in thousands per GB. Then each server's
# medians and the median of its per-round ratios to the first server.
# RT=1 runs the servers and curl at real-time priority (chrt -f 50): on a machine
# other jobs share, they then run as on a quiet one (the others wait), which is
# when the drivers' difference shows (at ~1 GB/s under load it was hidden). It
# starves every other process on a 2-core machine for the whole run (their own
# benchmarks and timing-sensitive tests then measure a machine that stops): use
# it only when nothing else runs, and report the figure without it beside it.
# Usage: bench/big-ab.sh lo|veth ROUNDS NAME=SPEC...   (MIB=1024 DL=2)
# e.g. RT=1 bench/big-ab.sh veth 5 nginx=nginx epoll=$B uring=$B,uring
# Root for veth and RT (the namespaces are removed on exit); everything is bounded
# in time and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib/veth.sh
source bench/lib/nginx.sh
source bench/lib/work.sh
source bench/lib/servers.sh
mode=$1 rounds=$2
shift 2
rt=()
[ -n "${RT:-}" ] && rt=(chrt -f 50)
mib=${MIB:-1024}
dl=${DL:-2}
big=$((mib << 20))
gb=$(echo "$big * $dl / 1000000000" | bc -l)
bench_work big-ab
mkdir -p "$work/www"
chmod 755 "$work" "$work/www"
head -c $big /dev/urandom > "$work/www/big.bin"
chmod 644 "$work/www/big.bin"
cat "$work/www/big.bin" > /dev/null
ab_network "$mode" zcbigab$$
declare -A port pid cpugb cli tcs
start_servers 18580 "$@"
for n in "${names[@]}"; do
  "${in_cli[@]}" curl -s "http://$addr:${port[$n]}/big.bin" | cmp -s - "$work/www/big.bin" \
    || { echo "$n: wrong bytes" >&2; exit 1; }
done
for r in $(seq "$rounds"); do
  echo "round $r:"
  for n in "${names[@]}"; do
    perf stat -x, -o "$work/$n.pst" -p "${pid[$n]}" -e task-clock,tcp:tcp_probe,net:netif_receive_skb \
      -e syscalls:sys_enter_io_uring_enter,page-faults -- sleep 1000 2>/dev/null &
    ps=$!
    sleep 0.2
    c0=$(server_cpu "${pid[$n]}")
    t0=$(date +%s.%N)
    # `times`: the CPU-s (user, system) the subshell's children (curl) used.
    tm=$( (for _ in $(seq "$dl"); do
      b=$("${in_cli[@]}" "${rt[@]}" taskset -c 1 curl -s --max-time 120 -o /dev/null -w '%{size_download}' \
        "http://$addr:${port[$n]}/big.bin")
      [ "$b" = $big ] || { echo "$n: short download ($b bytes)" >&2; exit 1; }
    done; times) | tail -1)
    t1=$(date +%s.%N)
    c1=$(server_cpu "${pid[$n]}")
    kill "$(pgrep -P $ps)" 2>/dev/null || true
    wait $ps 2>/dev/null || true
    v=$(echo "($c1 - $c0) / $gb" | bc -l)
    cpugb[$n]+="$v "
    ccg=$(echo "$tm" | awk -v gb="$gb" '{split($1, u, "m"); split($2, y, "m"); sub("s", "", u[2]); sub("s", "", y[2])
      print (u[1] * 60 + u[2] + y[1] * 60 + y[2]) / gb}')
    cli[$n]+="$ccg "
    pst=$(awk -F, -v gb="$gb" '$1 ~ /^[0-9.]+$/ {v[i++] = $1} END {
      printf "task-clock %.3f, tcp_probe %.1fK, rx %.1fK, enter %.2fK, faults %.1fK", v[0] / 1000 / gb, v[1] / gb / 1000,
        v[2] / gb / 1000, v[3] / gb / 1000, v[4] / gb / 1000}' "$work/$n.pst")
    tcs[$n]+="$(echo "$pst" | awk '{print $2}' | tr -d ,) "
    printf '  %s: %.3f CPU-s/GB, %.2f GB/s, curl %.3f CPU-s/GB; per GB: %s\n' "$n" "$v" \
      "$(echo "$big * $dl / ($t1 - $t0) / 1000000000" | bc -l)" "$ccg" "$pst"
  done
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
pairmed() { paste <(echo "$1" | tr ' ' '\n' | grep .) <(echo "$2" | tr ' ' '\n' | grep .) | awk '{print $1 / $2}' | median; }
echo
first=${names[0]}
for n in "${names[@]}"; do
  printf '%s: median %.3f server CPU-s/GB (%.3fx %s, median of per-round ratios), task-clock %.3f (%.3fx), curl %.3f\n' \
    "$n" "$(echo "${cpugb[$n]}" | median)" "$(pairmed "${cpugb[$n]}" "${cpugb[$first]}")" "$first" \
    "$(echo "${tcs[$n]}" | median)" "$(pairmed "${tcs[$n]}" "${tcs[$first]}")" "$(echo "${cli[$n]}" | median)"
done
