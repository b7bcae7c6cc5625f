#!/usr/bin/env bash
# Small files from several servers in alternating rounds, over loopback or across a
# veth pair: each server (NAME=BIN[,VAR=VALUE...][,uring], or NAME=nginx) pinned to
# CPU 0 with one worker, wrk -t1 -c50 on CPU 1; each round runs wrk for SECS against
# every server in turn, once per file size (SIZES, KiB: "1 64" by default). Per
# server, size and round: requests/s, requests per server CPU-second (utime+stime
# from /proc/PID/stat) and wrk's share of its core (near 100%: the rate is the
# client's). Then each server's medians and the median of its per-round ratios to
# the first server (paired rounds: load from other tenants hits a round's servers
# alike). Bytes are checked once per server and size before the rounds.
# CLIENT=hload: zcopy-bench's hload (HLOAD=path, default target/release/hload) with the
# same -t1 -c50 instead of wrk: less client CPU per response, and any odd response
# (status, Content-Length, a short or long body) stops the script.
# Usage: bench/small-ab.sh lo|veth ROUNDS SECS NAME=SPEC...   (SIZES="1 64")
# (NAME=lwan:PATH for lwan; see bench/lib/servers.sh)
# e.g. bench/small-ab.sh veth 5 5 nginx=nginx epoll=$B uring=$B,uring base=$OLD
# Root for veth (the namespaces are removed on exit); everything is bounded in time
# and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib/veth.sh
source bench/lib/nginx.sh
source bench/lib/work.sh
source bench/lib/servers.sh
mode=$1 rounds=$2 secs=$3
shift 3
sizes=${SIZES:-1 64}
client=${CLIENT:-wrk}
case $client in
  wrk) ;;
  hload) hload=${HLOAD:-target/release/hload} ;;
  *) echo "CLIENT: wrk or hload" >&2; exit 2 ;;
esac
bench_work small-ab
mkdir -p "$work/www"
chmod 755 "$work" "$work/www"
for k in $sizes; do
  head -c $((k << 10)) /dev/urandom > "$work/www/${k}k.bin"
done
chmod 644 "$work"/www/*
ab_network "$mode" zcsmall$$
declare -A port pid rps rpc wcpu
start_servers 18680 "$@"
for n in "${names[@]}"; do
  for k in $sizes; do
    "${in_cli[@]}" curl -s "http://$addr:${port[$n]}/${k}k.bin" | cmp -s - "$work/www/${k}k.bin" \
      || { echo "$n: wrong bytes for ${k}k.bin" >&2; exit 1; }
  done
done
for r in $(seq "$rounds"); do
  echo "round $r ($(uptime | sed 's/.*load/load/')):"
  for k in $sizes; do
    for n in "${names[@]}"; do
      c0=$(server_cpu "${pid[$n]}")
      cmd=(wrk -t1 -c50 -d"${secs}s")
      [ "$client" = hload ] && cmd=("$hload" -t 1 -c 50 -d "$secs" --len $((k << 10)))
      # `times`: the CPU-s (user, system) the subshell's child (the client) used.
      out=$( ("${in_cli[@]}" taskset -c 1 timeout $((secs + 30)) "${cmd[@]}" \
        "http://$addr:${port[$n]}/${k}k.bin" || echo "Client failed"; times) )
      c1=$(server_cpu "${pid[$n]}")
      req=$(echo "$out" | awk '/requests in/ {print $1}')
      if echo "$out" | grep -q "Non-2xx\|Socket errors\|Client failed"; then
        echo "$n: errors in $client's run: $out" >&2
        exit 1
      fi
      # wrk's own measured duration ("N requests in 5.00s"), not the nominal SECS.
      dur=$(echo "$out" | awk '/requests in/ {d = $4; sub(",", "", d); if (d ~ /ms$/) { sub("ms", "", d); d /= 1000 } else if (d ~ /m$/) { sub("m", "", d); d *= 60 } else sub("s", "", d); print d}')
      w=$(echo "$out" | tail -1 | awk -v s="$dur" '{split($1, u, "m"); split($2, y, "m"); sub("s", "", u[2]); sub("s", "", y[2])
        print 100 * (u[1] * 60 + u[2] + y[1] * 60 + y[2]) / s}')
      v=$(echo "$req / $dur" | bc -l)
      pc=$(echo "$req / ($c1 - $c0 + 0.001)" | bc -l)
      rps[$n$k]+="$v "
      rpc[$n$k]+="$pc "
      wcpu[$n$k]+="$w "
      printf '  %sk %s: %.0f req/s, %.0f req per server CPU-s, %s %.0f%%\n' "$k" "$n" "$v" "$pc" "$client" "$w"
    done
  done
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
pairmed() { paste <(echo "$1" | tr ' ' '\n' | grep .) <(echo "$2" | tr ' ' '\n' | grep .) | awk '{print $1 / $2}' | median; }
echo
echo "Medians of $rounds rounds ($mode; $client -t1 -c50 on CPU 1, servers on CPU 0, ${secs} s each); ratios: median of per-round ratios to ${names[0]}"
echo "| size | server | req/s | ratio | req per server CPU-s | ratio | $client CPU % |"
echo "|---|---|---|---|---|---|---|"
first=${names[0]}
for k in $sizes; do
  for n in "${names[@]}"; do
    printf '| %s KiB | %s | %.0f | %.2fx | %.0f | %.2fx | %.0f |\n' "$k" "$n" \
      "$(echo "${rps[$n$k]}" | median)" "$(pairmed "${rps[$n$k]}" "${rps[$first$k]}")" \
      "$(echo "${rpc[$n$k]}" | median)" "$(pairmed "${rpc[$n$k]}" "${rpc[$first$k]}")" \
      "$(echo "${wcpu[$n$k]}" | median)"
  done
done
