#!/usr/bin/env bash
# A cold file must never stall other connections: p99 of hot 1 KiB requests (wrk -c10)
# while 8 clients download 128 MiB files that are not in the page cache (evicted with
# posix_fadvise DONTNEED before every download), against the all-hot p99 of the same
# server: the same 8 downloads with their files in the page cache. (The p99 with no
# downloads at all is reported too; the downloads themselves take the server's one core,
# so that one is not the baseline.) zcopy serve (epoll driver, and the uring driver with --io uring when it
# exists) side by side with nginx (1 worker, sendfile on), each pinned to CPU 0, the
# clients on CPU 1, loopback only, bounded in time; writes bench/results/cold.md.
# Usage: bench/cold.sh [WRK_SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib/work.sh
secs=${1:-8}
for t in nginx:nginx-light wrk:wrk curl:curl taskset:util-linux; do
  command -v "${t%%:*}" >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${t#*:}" >/dev/null; }
done
cargo build --release -q -p zcopy-cli
zcopy=$PWD/target/release/zcopy
bench_work cold "${TMPDIR:-/var/tmp}"
mkdir -p "$work/www" "$work/nginx/logs"
head -c 1024 /dev/urandom > "$work/www/1k.bin"
for i in 1 2 3 4 5 6 7 8; do head -c $((128 << 20)) /dev/urandom > "$work/www/cold$i.bin"; done
sync
evict() { python3 -c "import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED)" "$1"; }

. "$(dirname "$0")/lib/nginx.sh"
nginx_conf "$work/nginx" "server { listen 127.0.0.1:18090; root $work/www; }"
chmod -R a+rX "$work"

# p99 of 1k.bin on PORT, in ms.
p99() {
  taskset -c 1 wrk -t1 -c10 -d"${secs}s" --latency "http://127.0.0.1:$1/1k.bin" \
    | awk '/ 99%/ { v=$2; if (v ~ /us$/) { sub(/us/,"",v); v/=1000 } else if (v ~ /ms$/) { sub(/ms/,"",v) } else if (v ~ /s$/) { sub(/s/,"",v); v*=1000 }; print v }'
}

# Runs the downloaders against PORT until the file STOP exists; MODE cold evicts each
# file before every download, hot reads it into the page cache first.
downloaders() {
  local port=$1 mode=$2
  for i in 1 2 3 4 5 6 7 8; do
    [ "$mode" = hot ] && cat "$work/www/cold$i.bin" > /dev/null
    (
      while [ ! -e "$work/stop" ]; do
        [ "$mode" = cold ] && evict "$work/www/cold$i.bin"
        taskset -c 1 curl -s --max-time 60 -o /dev/null "http://127.0.0.1:$port/cold$i.bin" || true
      done
    ) &
    pids+=($!)
  done
}

rows=()
measure() {
  local name=$1 port=$2
  sleep 1
  local idle hot cold
  idle=$(p99 "$port")
  rm -f "$work/stop"
  downloaders "$port" hot
  sleep 1
  hot=$(p99 "$port")
  touch "$work/stop"
  sleep 2
  rm -f "$work/stop"
  downloaders "$port" cold
  sleep 1
  cold=$(p99 "$port")
  touch "$work/stop"
  sleep 2
  rows+=("| $name | $idle | $hot | $cold | $(printf '%.2f' "$(echo "$cold / $hot" | bc -l)") |")
  echo "$name: p99 ${idle} ms alone, ${hot} ms with hot downloads, ${cold} ms with cold ones" >&2
}

taskset -c 0 nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" &
pids+=($!)
measure "nginx 1 worker (sendfile)" 18090
taskset -c 0 "$zcopy" -q serve "$work/www" --listen 127.0.0.1:18091 --workers 1 --io epoll > /dev/null &
pids+=($!)
measure "zcopy (epoll driver)" 18091
if "$zcopy" serve --help | grep -q -- '--io'; then
  taskset -c 0 "$zcopy" -q serve "$work/www" --listen 127.0.0.1:18092 --workers 1 --io uring > /dev/null &
  pids+=($!)
  measure "zcopy (uring driver)" 18092
fi

out=bench/results/cold.md
{
  echo "# Hot 1 KiB p99 while 8 clients download cold 128 MiB files ($(uname -r), $(nproc) cores)"
  echo
  echo "Server pinned to CPU 0 (1 worker), clients to CPU 1, loopback; every download"
  echo "starts from a file evicted with posix_fadvise(DONTNEED)."
  echo "Run: \`bench/cold.sh $secs\` on $(date -u +%F). Target: p99 with cold downloads"
  echo "within 2x of the all-hot p99 (the same 8 downloads, files in the page cache)."
  echo
  echo "| server | p99 alone (ms) | p99, 8 hot downloads (ms) | p99, 8 cold downloads (ms) | cold / hot |"
  echo "|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} > "$out"
cat "$out"
