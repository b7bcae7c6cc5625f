#!/usr/bin/env bash
# What a large download costs its neighbours: fixed-rate 1 KiB GETs (one every 2 ms on
# one keep-alive connection, bench/beside_big.py) to one zcopy worker over loopback,
# while curl downloads a 1 GiB file from the same worker again and again, then alone;
# latency p50/p99/p999/max per build, 3 alternating rounds. Server on CPU 0, clients
# on CPU 1. Bounded in time; everything listens on 127.0.0.1 and stops by itself.
# Usage: bench/beside-big.sh NAME=BIN[,IO]...   (IO: epoll or uring, default uring)
set -euo pipefail
source "$(dirname "$0")/lib/work.sh"
py=$(cd "$(dirname "$0")" && pwd)/beside_big.py
bench_work beside-big
mkdir "$work/www"
head -c 1024 /dev/urandom > "$work/www/1k.bin"
head -c $((1 << 30)) /dev/urandom > "$work/www/big.bin"
port=18931
for r in 1 2 3; do
  for spec in "$@"; do
    name=${spec%%=*}; rest=${spec#*=}; bin=${rest%%,*}; io=uring
    [[ $rest == *,* ]] && io=${rest#*,}
    taskset -c 0 "$bin" -q serve "$work/www" --listen "127.0.0.1:$port" --workers 1 --io "$io" &
    srv=$!; pids+=("$srv")
    sleep 0.5
    (
      end=$((SECONDS + 12))
      while [ $SECONDS -lt $end ]; do taskset -c 1 curl -s -o /dev/null "http://127.0.0.1:$port/big.bin"; done
    ) &
    dl=$!; pids+=("$dl")
    sleep 1
    echo "round $r $name, beside the download: $(taskset -c 1 python3 "$py" $port 8 0.002)"
    wait "$dl" 2>/dev/null || true
    echo "round $r $name, alone:               $(taskset -c 1 python3 "$py" $port 4 0.002)"
    kill "$srv"; wait "$srv" 2>/dev/null || true
  done
done
