#!/usr/bin/env bash
# zcopy serve vs nginx (sendfile on, tcp_nopush on, 1 worker, access_log off), side by
# side in one run on the same files, server pinned to CPU 0 and clients to CPU 1:
#   - 1 GiB download with curl: throughput and server CPU-seconds per GB
#   - 1 KiB and 64 KiB files with wrk -c50: requests/s, p99 latency, requests per
#     server CPU-second
# Prints a table of zcopy/nginx ratios and writes bench/results/peers.md.
# With --veth (root): the servers run in one network namespace and the clients in
# another, joined by a veth pair with addresses from 198.18.0.0/15 (a peer whose
# receive queue is in this kernel but not on loopback, like a container); writes
# bench/results/peers-veth.md. The namespaces are removed on exit, also on failure.
# Everything talks to 127.0.0.1 (or the veth pair) only, is bounded in time, and stops
# by itself.
# ZCOPY_ARGS adds flags to `zcopy serve` (e.g. "--io uring"); then the results file
# is named after them (bench/results/peers[-veth]-io-uring.md).
# PEERS_EROFS=1 (root, erofs-utils): both servers serve the same files from an erofs
# image mounted read-only (a source proven not to change: zcopy lends it by reference
# to a local peer too); the results file gains "-erofs".
# PEERS_ROUNDS=N runs the wrk measures N times, alternating the servers, and reports
# medians. Each wrk row also says how busy wrk kept the client's core (its own CPU-s
# per second): near 100% the request rate is the client's, not the server's.
# Usage: bench/peers.sh [--veth] [WRK_SECONDS] [DOWNLOADS]
# ZCOPY_BIN=PATH measures that zcopy binary instead of building target/release/zcopy.
# (PEERS_BIG_MIB=N downloads an N MiB file instead of 1 GiB: for smoke runs.)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib/veth.sh
source bench/lib/work.sh
mode=loopback
if [ "${1:-}" = --veth ]; then mode=veth; shift; fi
secs=${1:-10}
downloads=${2:-3}
big=$(( ${PEERS_BIG_MIB:-1024} << 20 ))
need=()
for t in nginx:nginx-light wrk:wrk curl:curl taskset:util-linux bc:bc ip:iproute2; do
  command -v "${t%%:*}" >/dev/null || need+=("${t#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ -n "${ZCOPY_BIN:-}" ]; then
  zcopy=$ZCOPY_BIN
else
  cargo build --release -q -p zcopy-cli
  zcopy=$PWD/target/release/zcopy
fi
bench_atexit() {
  [ -d "$work/ro" ] && umount -l "$work/ro" 2>/dev/null
}
bench_work peers

# Where the servers listen, and how to run a command on each side.
addr=127.0.0.1
in_srv=()
in_cli=()
if [ $mode = veth ]; then
  veth_up zcpeers$$ 198.19
fi

mkdir -p "$work/www" "$work/nginx/logs"
chmod 755 "$work" "$work/www"   # nginx workers run as www-data
head -c 1024 /dev/urandom > "$work/www/1k.bin"
head -c 65536 /dev/urandom > "$work/www/64k.bin"
head -c $big /dev/urandom > "$work/www/1g.bin"
www=$work/www
if [ "${PEERS_EROFS:-}" = 1 ]; then
  command -v mkfs.erofs >/dev/null || { echo "PEERS_EROFS=1 needs mkfs.erofs (erofs-utils)" >&2; exit 1; }
  mkfs.erofs --quiet "$work/www.erofs" "$work/www" >/dev/null
  mkdir "$work/ro"
  mount -t erofs -o loop,ro "$work/www.erofs" "$work/ro"
  www=$work/ro
fi
cat "$www/1g.bin" > /dev/null   # warm the page cache

port_nginx=18080
port_zcopy=18081
port_nginx_ofc=18082
. "$(dirname "$0")/lib/nginx.sh"
# The second server has nginx's open-file cache on (off by default), since zcopy
# keeps small files open too: the fair second opinion.
nginx_conf "$work/nginx" \
  "server { listen $addr:$port_nginx; root $www; }" \
  "server { listen $addr:$port_nginx_ofc; root $www; open_file_cache max=4096 inactive=20s; open_file_cache_valid 1s; }"
"${in_srv[@]}" taskset -c 0 nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" &
pids+=($!)
"${in_srv[@]}" taskset -c 0 "$zcopy" -q serve "$www" --listen $addr:$port_zcopy --workers 1 ${ZCOPY_ARGS:-} > "$work/zcopy.out" &
pids+=($!)
sleep 1
nginx_worker=$(nginx_worker "$work/nginx")
zcopy_pid=${pids[1]}

# CPU seconds (user+system) a process has used so far.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{print ($14+$15)/hz}' "/proc/$1/stat"; }

declare -A R
measure_download() { # name port pid
  local name=$1 port=$2 pid=$3 c0 c1 t0 t1 bytes=0
  c0=$(cpu "$pid"); t0=$(date +%s.%N)
  for _ in $(seq "$downloads"); do
    b=$("${in_cli[@]}" taskset -c 1 curl -s --max-time 300 -o /dev/null -w '%{size_download}' "http://$addr:$port/1g.bin")
    [ "$b" = $big ] || { echo "$name: short download ($b bytes)" >&2; exit 1; }
    bytes=$((bytes + b))
  done
  t1=$(date +%s.%N); c1=$(cpu "$pid")
  R[$name.gbps]=$(echo "$bytes / ($t1 - $t0) / 1000000000" | bc -l)
  R[$name.cpugb]=$(echo "($c1 - $c0) / ($bytes / 1000000000)" | bc -l)
}
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
measure_wrk() { # name port pid file (values of each round appended; see `med`)
  local name=$1 port=$2 pid=$3 file=$4 c0 c1 out rps
  c0=$(cpu "$pid")
  # `times` after wrk: the CPU-s (user, system) the subshell's children used.
  out=$( ("${in_cli[@]}" taskset -c 1 wrk -t1 -c50 -d"${secs}s" --timeout 5s --latency "http://$addr:$port/$file"; times) )
  c1=$(cpu "$pid")
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  R[$name.$file.rps]+="$rps "
  R[$name.$file.p99]=$(echo "$out" | awk '$1 == "99%" {print $2}')
  R[$name.$file.errors]+=$(echo "$out" | awk '/Non-2xx|Socket errors/' | tr '\n' ' ')
  R[$name.$file.rpcpu]+="$(echo "$rps * $secs / ($c1 - $c0)" | bc -l) "
  R[$name.$file.wrkcpu]+="$(echo "$out" | tail -1 | awk -v s="$secs" '{
    split($1, u, "m"); split($2, y, "m"); sub("s", "", u[2]); sub("s", "", y[2])
    print (u[1] * 60 + u[2] + y[1] * 60 + y[2]) / s * 100 }') "
}
# The median of the rounds of R[$1].
med() { echo "${R[$1]}" | median; }

measure_download nginx $port_nginx "$nginx_worker"
measure_download zcopy $port_zcopy "$zcopy_pid"
for f in 1k.bin 64k.bin; do
  for _ in $(seq "${PEERS_ROUNDS:-1}"); do
    measure_wrk nginx $port_nginx "$nginx_worker" $f
    measure_wrk zcopy $port_zcopy "$zcopy_pid" $f
    measure_wrk nginx_ofc $port_nginx_ofc "$nginx_worker" $f
  done
  for n in nginx zcopy nginx_ofc; do
    for m in rps rpcpu wrkcpu; do R[$n.$f.$m]=$(med $n.$f.$m); done
  done
done

ratio() { echo "$1 / $2" | bc -l | xargs printf '%.2f'; }
f2() { printf '%.2f' "$1"; }
f0() { printf '%.0f' "$1"; }
mkdir -p bench/results
out=bench/results/peers.md
path="loopback"
if [ $mode = veth ]; then
  out=bench/results/peers-veth.md
  path="across a veth pair (server and client in two network namespaces)"
fi
if [ "${PEERS_EROFS:-}" = 1 ]; then
  out=${out%.md}-erofs.md
  path="$path, files on a read-only erofs image"
fi
if [ -n "${ZCOPY_ARGS:-}" ]; then
  out=${out%.md}-$(echo "$ZCOPY_ARGS" | tr -cs 'a-z0-9' '-' | sed 's/^-*//; s/-*$//').md
  path="$path, zcopy serve $ZCOPY_ARGS"
fi
{
  echo "# zcopy serve vs nginx $(nginx -v 2>&1 | sed 's/.*\///'), $(uname -r), $(nproc) cores"
  echo
  echo "Server pinned to CPU 0 (1 worker each), client to CPU 1, $path, page cache warm."
  echo "Run: \`$([ -n "${PEERS_ROUNDS:-}" ] && echo "PEERS_ROUNDS=$PEERS_ROUNDS ")$([ "${PEERS_EROFS:-}" = 1 ] && echo "PEERS_EROFS=1 ")$([ -n "${ZCOPY_ARGS:-}" ] && echo "ZCOPY_ARGS=\"$ZCOPY_ARGS\" ")bench/peers.sh $([ $mode = veth ] && echo '--veth ')$secs $downloads\` on $(date -u +%Y-%m-%d)."
  echo
  echo "| measure | nginx | zcopy | zcopy/nginx | target |"
  echo "|---|---|---|---|---|"
  echo "| $((big >> 20)) MiB download, GB/s (curl, ${downloads}x) | $(f2 "${R[nginx.gbps]}") | $(f2 "${R[zcopy.gbps]}") | $(ratio "${R[zcopy.gbps]}" "${R[nginx.gbps]}") | same |"
  echo "| $((big >> 20)) MiB download, server CPU-s per GB | $(f2 "${R[nginx.cpugb]}") | $(f2 "${R[zcopy.cpugb]}") | $(ratio "${R[zcopy.cpugb]}" "${R[nginx.cpugb]}") | <= 0.9 |"
  for f in 1k.bin 64k.bin; do
    t=1.2; [ $f = 64k.bin ] && t=1.1
    echo "| $f, requests/s (wrk -c50, ${secs}s) | $(f0 "${R[nginx.$f.rps]}") | $(f0 "${R[zcopy.$f.rps]}") | $(ratio "${R[zcopy.$f.rps]}" "${R[nginx.$f.rps]}") | >= $t |"
    echo "| $f, requests per server CPU-second | $(f0 "${R[nginx.$f.rpcpu]}") | $(f0 "${R[zcopy.$f.rpcpu]}") | $(ratio "${R[zcopy.$f.rpcpu]}" "${R[nginx.$f.rpcpu]}") | |"
    echo "| $f, p99 latency (last round) | ${R[nginx.$f.p99]} | ${R[zcopy.$f.p99]} | | |"
    echo "| $f, wrk's CPU (% of the client core) | $(f0 "${R[nginx.$f.wrkcpu]}") | $(f0 "${R[zcopy.$f.wrkcpu]}") | | |"
  done
  echo
  echo "Against nginx with open_file_cache on (zcopy keeps small files open by default):"
  echo
  echo "| measure | nginx (open_file_cache) | zcopy | zcopy/nginx |"
  echo "|---|---|---|---|"
  for f in 1k.bin 64k.bin; do
    echo "| $f, requests/s | $(f0 "${R[nginx_ofc.$f.rps]}") | $(f0 "${R[zcopy.$f.rps]}") | $(ratio "${R[zcopy.$f.rps]}" "${R[nginx_ofc.$f.rps]}") |"
    echo "| $f, requests per server CPU-second | $(f0 "${R[nginx_ofc.$f.rpcpu]}") | $(f0 "${R[zcopy.$f.rpcpu]}") | $(ratio "${R[zcopy.$f.rpcpu]}" "${R[nginx_ofc.$f.rpcpu]}") |"
  done
  for k in "${!R[@]}"; do
    case $k in *.errors) [ -n "${R[$k]// /}" ] && echo && echo "warning: $k: ${R[$k]}";; esac
  done
} | tee "$out"
