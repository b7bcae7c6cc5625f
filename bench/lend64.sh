#!/usr/bin/env bash
# A 64 KiB hot file (LEND_KIB) over loopback: nginx (1 worker, sendfile on, tcp_nopush on) and
# two zcopy binaries (BASE, NEW: e.g. before and after a change), each on both
# drivers (epoll, --io uring), measured in alternating rounds in one run: wrk -t1
# -c50 pinned to CPU 1, every server to CPU 0 (one at a time is loaded).
# Prints per-server medians (requests/s, requests per server CPU-second, the server's
# and the client's share of a core: the one near 100% sets the pace), each against
# nginx, and NEW/BASE as the median of the
# per-round ratios (paired rounds: noise from the other tenants of the machine
# hits both alike).
# Usage: bench/lend64.sh BASE_BIN NEW_BIN [ROUNDS] [SECS]
# LEND_KIB=N serves an N KiB file instead (e.g. 1: a file held in memory, not lent).
# SHARED=1: nothing pinned, the client with -t2: client and server share both cores, as on a
# machine that runs both, so req/s rests on the whole cost of a request (client plus
# server) and not on one pinned client's ceiling (its CPU % is then out of 200).
# CLIENT=h2load: h2load --h1 (nghttp2) with as many threads and connections instead of
# wrk: about wrk's CPU per 64 KiB response here (16-19 us against 18-19), so it is a
# second opinion, not a higher ceiling (the client's CPU % says which side sets the pace). With RPS=N
# (h2load only) each connection asks N requests a second, 50 N in all: every server
# gets the same load, below its ceiling, so requests per server CPU-s compare the
# same work and not a fast server's extra idle wake-ups (req/s is then the rate).
# CLIENT=hload: zcopy-bench's hload (HLOAD=path, default target/release/hload: `cargo
# build --release -p zcopy-bench --bin hload`), -t1 -c50 as wrk: it discards bodies
# with recv(MSG_TRUNC) (no copy to user space), so it takes less CPU per response than
# wrk or h2load, and it stops the run on any odd response (another status, a
# Content-Length other than the file's, a short or long body).
# Everything listens on 127.0.0.1, is bounded in time and stops by itself.
set -euo pipefail
base=$1; new=$2; rounds=${3:-7}; secs=${4:-5}
kib=${LEND_KIB:-64}; f=${kib}k.bin
client=${CLIENT:-wrk}
case $client in
  wrk | h2load) ;;
  hload) hload=${HLOAD:-$(dirname "$0")/../target/release/hload} ;;
  *) echo "CLIENT: wrk, h2load or hload" >&2; exit 2 ;;
esac
rate=()
if [ -n "${RPS:-}" ]; then
  [ "$client" = h2load ] || { echo "RPS needs CLIENT=h2load" >&2; exit 2; }
  rate=(--rps="$RPS")
fi
srv_cpus=0; on=(taskset -c 1); t=1; how="$client -t1 -c50 pinned to CPU 1, servers to CPU 0"
if [ "${SHARED:-0}" = 1 ]; then
  srv_cpus=0,1; on=(); t=2; how="$client -t2 -c50 and servers sharing both CPUs (SHARED=1)"
fi
if [ "$client" = h2load ]; then how="h2load --h1${RPS:+ --rps=$RPS}${how#h2load}"; fi
# One measured run of the client against URL: its report, then the shell's `times`;
# the client's exit status (hload exits 1 on any odd response), so that under
# `set -e` a failed run stops the script instead of leaving a hole in the rounds.
load() {
  local rc=0
  if [ "$client" = wrk ]; then
    "${on[@]}" wrk -t$t -c50 -d"${secs}s" "$1" || rc=$?
  elif [ "$client" = hload ]; then
    "${on[@]}" "$hload" -t $t -c 50 -d "$secs" --len $((kib << 10)) "$1" || rc=$?
  else
    "${on[@]}" h2load --h1 -t$t -c50 -D "$secs" "${rate[@]}" "$1" || rc=$?
  fi
  times
  return $rc
}
. "$(dirname "$0")/lib/work.sh"
bench_work lend64
mkdir -p "$work/www" "$work/nginx/logs"
chmod 755 "$work" "$work/www"
head -c $((kib << 10)) /dev/urandom > "$work/www/$f"
chmod 644 "$work/www/$f"
. "$(dirname "$0")/lib/nginx.sh"
. "$(dirname "$0")/lib/servers.sh"   # server_cpu (this script starts its own servers: SHARED pins them to both cores)
nginx_conf "$work/nginx" "server { listen 127.0.0.1:18180; root $work/www; }"
taskset -c "$srv_cpus" nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" &
pids+=($!)
declare -A port pid
names=(nginx base-epoll new-epoll base-uring new-uring)
i=1
for n in base-epoll new-epoll base-uring new-uring; do
  bin=$base; [[ $n == new-* ]] && bin=$new
  io=""; [[ $n == *-uring ]] && io="--io uring"
  port[$n]=$((18180 + i)); i=$((i + 1))
  # shellcheck disable=SC2086
  taskset -c "$srv_cpus" "$bin" -q serve "$work/www" --listen 127.0.0.1:${port[$n]} --workers 1 $io > "$work/$n.out" 2>&1 &
  pids+=($!); pid[$n]=$!
done
sleep 1
port[nginx]=18180
pid[nginx]=$(nginx_worker "$work/nginx")
for n in "${names[@]}"; do   # warm up: snapshots made, templates filled
  curl -s -o /dev/null "http://127.0.0.1:${port[$n]}/$f"; sleep 0.3
  curl -s "http://127.0.0.1:${port[$n]}/$f" | cmp -s - "$work/www/$f" || { echo "$n: wrong bytes" >&2; exit 1; }
done
declare -A rps rpcpu ccpu scpu
for r in $(seq "$rounds"); do
  for n in "${names[@]}"; do
    c0=$(server_cpu "${pid[$n]}")
    out=$(load "http://127.0.0.1:${port[$n]}/$f") || { echo "$n: the client failed: $out" >&2; exit 1; }
    c1=$(server_cpu "${pid[$n]}")
    if [ "$client" = wrk ]; then
      echo "$out" | grep -q 'Non-2xx\|Socket errors' && echo "warning: $n: $(echo "$out" | grep 'Non-2xx\|Socket errors')" >&2
      q=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    elif [ "$client" = hload ]; then   # an odd response stopped the script above
      q=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    else
      echo "$out" | grep -q ' 0 failed, 0 errored, 0 timeout' && echo "$out" | grep -q ' 0 4xx, 0 5xx' ||
        echo "warning: $n: $(echo "$out" | grep '^requests\|^status codes')" >&2
      q=$(echo "$out" | awk '/^finished in/ {print $4}')
    fi
    rps[$n]+="$q "
    rpcpu[$n]+="$(echo "$q * $secs / ($c1 - $c0)" | bc -l) "
    scpu[$n]+="$(echo "($c1 - $c0) * 100 / $secs" | bc -l) "
    ccpu[$n]+="$(echo "$out" | tail -1 | awk -v s="$secs" '{
      split($1, u, "m"); split($2, y, "m"); sub("s", "", u[2]); sub("s", "", y[2])
      print (u[1] * 60 + u[2] + y[1] * 60 + y[2]) / s * 100 }') "
  done
  echo "round $r done" >&2
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
med() { echo "$1" | median; }
# The median of the per-round ratios a/b of two series.
pairmed() { paste <(echo "$1" | tr ' ' '\n' | grep .) <(echo "$2" | tr ' ' '\n' | grep .) | awk '{print $1 / $2}' | median; }
echo "$kib KiB over loopback, $rounds alternating rounds of -d${secs}s, $how; $(nginx -v 2>&1 | sed 's/.*\///'), $(uname -r)"
echo
echo "| server | req/s | req per server CPU-s | server CPU % | $client CPU % | req/s vs nginx | per CPU-s vs nginx |"
echo "|---|---|---|---|---|---|---|"
for n in "${names[@]}"; do
  printf '| %s | %.0f | %.0f | %.0f | %.0f | %.2f | %.2f |\n' "$n" "$(med "${rps[$n]}")" "$(med "${rpcpu[$n]}")" \
    "$(med "${scpu[$n]}")" "$(med "${ccpu[$n]}")" \
    "$(pairmed "${rps[$n]}" "${rps[nginx]}")" "$(pairmed "${rpcpu[$n]}" "${rpcpu[nginx]}")"
done
echo
echo "(vs nginx: the median of the per-round ratios, not the ratio of the medians beside it.)"
echo
for d in epoll uring; do
  printf 'new/base, %s: req/s %.3f, per CPU-s %.3f (medians of per-round ratios)\n' "$d" \
    "$(pairmed "${rps[new-$d]}" "${rps[base-$d]}")" "$(pairmed "${rpcpu[new-$d]}" "${rpcpu[base-$d]}")"
done
