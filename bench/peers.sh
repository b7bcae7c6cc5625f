#!/usr/bin/env bash
# zcopy serve vs nginx (sendfile on, tcp_nopush on, 1 worker, access_log off), side by
# side in one run on the same files, server pinned to CPU 0 and clients to CPU 1:
#   - 1 GiB download with curl: throughput and server CPU-seconds per GB
#   - 1 KiB and 64 KiB files with wrk -c50: requests/s, p99 latency, requests per
#     server CPU-second
# Prints a table of zcopy/nginx ratios and writes bench/results/peers.md.
# Everything talks to 127.0.0.1 only, is bounded in time, and stops by itself.
# Usage: bench/peers.sh [WRK_SECONDS] [DOWNLOADS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
downloads=${2:-3}
need=()
for t in nginx:nginx-light wrk:wrk curl:curl taskset:util-linux bc:bc; do
  command -v "${t%%:*}" >/dev/null || need+=("${t#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build --release -q -p zcopy-cli
zcopy=$PWD/target/release/zcopy
work=$(mktemp -d "${TMPDIR:-/tmp}/zcopy-peers.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

mkdir -p "$work/www" "$work/nginx/logs"
chmod 755 "$work" "$work/www"   # nginx workers run as www-data
head -c 1024 /dev/urandom > "$work/www/1k.bin"
head -c 65536 /dev/urandom > "$work/www/64k.bin"
head -c $((1 << 30)) /dev/urandom > "$work/www/1g.bin"
cat "$work/www/1g.bin" > /dev/null   # warm the page cache

port_nginx=18080
port_zcopy=18081
port_nginx_ofc=18082
cat > "$work/nginx/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
error_log $work/nginx/logs/error.log warn;
pid $work/nginx/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:$port_nginx;
    root $work/www;
  }
  # The same with nginx's open-file cache on (off by default), since zcopy keeps
  # small files open too: the fair second opinion.
  server {
    listen 127.0.0.1:$port_nginx_ofc;
    root $work/www;
    open_file_cache max=4096 inactive=20s;
    open_file_cache_valid 1s;
  }
}
NGINX
taskset -c 0 nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" &
pids+=($!)
taskset -c 0 "$zcopy" -q serve "$work/www" --listen 127.0.0.1:$port_zcopy --workers 1 > "$work/zcopy.out" &
pids+=($!)
sleep 1
nginx_pid=$(cat "$work/nginx/nginx.pid")
nginx_worker=$(pgrep -P "$nginx_pid" | head -1)
zcopy_pid=${pids[1]}

# CPU seconds (user+system) a process has used so far.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{print ($14+$15)/hz}' "/proc/$1/stat"; }

declare -A R
measure_download() { # name port pid
  local name=$1 port=$2 pid=$3 c0 c1 t0 t1 bytes=0
  c0=$(cpu "$pid"); t0=$(date +%s.%N)
  for _ in $(seq "$downloads"); do
    b=$(taskset -c 1 curl -s -o /dev/null -w '%{size_download}' "http://127.0.0.1:$port/1g.bin")
    [ "$b" = $((1 << 30)) ] || { echo "$name: short download ($b bytes)" >&2; exit 1; }
    bytes=$((bytes + b))
  done
  t1=$(date +%s.%N); c1=$(cpu "$pid")
  R[$name.gbps]=$(echo "$bytes / ($t1 - $t0) / 1000000000" | bc -l)
  R[$name.cpugb]=$(echo "($c1 - $c0) / ($bytes / 1000000000)" | bc -l)
}
measure_wrk() { # name port pid file
  local name=$1 port=$2 pid=$3 file=$4 c0 c1 out
  c0=$(cpu "$pid")
  out=$(taskset -c 1 wrk -t1 -c50 -d"${secs}s" --latency "http://127.0.0.1:$port/$file")
  c1=$(cpu "$pid")
  R[$name.$file.rps]=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  R[$name.$file.p99]=$(echo "$out" | awk '$1 == "99%" {print $2}')
  R[$name.$file.errors]=$(echo "$out" | awk '/Non-2xx|Socket errors/' | tr '\n' ' ')
  R[$name.$file.rpcpu]=$(echo "${R[$name.$file.rps]} * $secs / ($c1 - $c0)" | bc -l)
}

measure_download nginx $port_nginx "$nginx_worker"
measure_download zcopy $port_zcopy "$zcopy_pid"
for f in 1k.bin 64k.bin; do
  measure_wrk nginx $port_nginx "$nginx_worker" $f
  measure_wrk zcopy $port_zcopy "$zcopy_pid" $f
  measure_wrk nginx_ofc $port_nginx_ofc "$nginx_worker" $f
done

ratio() { echo "$1 / $2" | bc -l | xargs printf '%.2f'; }
f2() { printf '%.2f' "$1"; }
f0() { printf '%.0f' "$1"; }
mkdir -p bench/results
{
  echo "# zcopy serve vs nginx $(nginx -v 2>&1 | sed 's/.*\///'), $(uname -r), $(nproc) cores"
  echo
  echo "Server pinned to CPU 0 (1 worker each), client to CPU 1, loopback, page cache warm."
  echo "Run: \`bench/peers.sh $secs $downloads\` on $(date -u +%Y-%m-%d)."
  echo
  echo "| measure | nginx | zcopy | zcopy/nginx | target |"
  echo "|---|---|---|---|---|"
  echo "| 1 GiB download, GB/s (curl, ${downloads}x) | $(f2 "${R[nginx.gbps]}") | $(f2 "${R[zcopy.gbps]}") | $(ratio "${R[zcopy.gbps]}" "${R[nginx.gbps]}") | same |"
  echo "| 1 GiB download, server CPU-s per GB | $(f2 "${R[nginx.cpugb]}") | $(f2 "${R[zcopy.cpugb]}") | $(ratio "${R[zcopy.cpugb]}" "${R[nginx.cpugb]}") | <= 0.9 |"
  for f in 1k.bin 64k.bin; do
    t=1.2; [ $f = 64k.bin ] && t=1.1
    echo "| $f, requests/s (wrk -c50, ${secs}s) | $(f0 "${R[nginx.$f.rps]}") | $(f0 "${R[zcopy.$f.rps]}") | $(ratio "${R[zcopy.$f.rps]}" "${R[nginx.$f.rps]}") | >= $t |"
    echo "| $f, requests per server CPU-second | $(f0 "${R[nginx.$f.rpcpu]}") | $(f0 "${R[zcopy.$f.rpcpu]}") | $(ratio "${R[zcopy.$f.rpcpu]}" "${R[nginx.$f.rpcpu]}") | |"
    echo "| $f, p99 latency | ${R[nginx.$f.p99]} | ${R[zcopy.$f.p99]} | | |"
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
} | tee bench/results/peers.md
