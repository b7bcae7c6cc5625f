#!/usr/bin/env bash
# zcopy serve's I/O paths side by side with the peers, for small and medium files:
#   epoll        --io epoll (hot files ≤ 16 KiB held in memory under an inotify watch)
#   epoll-fstat  --io epoll with ZCOPY_DISABLE=inotify (every hit: fstat + pread)
#   uring        --io uring
#   lwan         when LWAN=/path/to/lwan is set (one thread; see below)
#   nginx        when nginx is installed (one worker, sendfile on, open_file_cache on)
#   epoll-base   when BASE=/path/to/zcopy is set: another build's --io epoll (an A/B of
#                two builds in the same rounds as the peers; BASE_NAME names it in the
#                results, e.g. its commit)
# Every server is pinned to CPU 0 and wrk (-t1 -c50) to CPU 1, loopback, page cache
# warm. Rounds alternate between the servers so drift on a shared machine hits all.
# Reports requests/s and requests per server CPU-second (utime+stime of every thread
# of every process of the server, from /proc) for 1 KiB and 64 KiB; writes
# bench/results/io.md. When wrk saturates its core (as it does near 180k req/s here),
# req/s stops telling the servers apart and req per CPU-second is the figure to read;
# its user and system parts per request (µs) say whether a gap is in the server's own
# code or in the kernel's work for it.
#
# lwan: build from https://github.com/lpereira/lwan (cmake, make). Where Landlock is
# not available (containers, VMs without it) its straitjacket stubs refuse to bind;
# make the `lwan_straitjacket_allow_*` functions in src/lib/lwan-straitjacket.c (and,
# when cmake finds no Landlock headers, the stubs after its `#else`) return
# true. This script writes its config (serve_files, threads = 1).
# Two more things keep lwan (as of upstream f0423921, Dec 2026) from being a fair peer,
# both fixed here so its figures mean what they say:
#  - Every file above 16 KiB (served by sendfile) is answered 500: serve_files adds a
#    Last-Modified header, and lwan_header_value_is_valid() in src/lib/lwan-response.c
#    checks values against RFC 8187's attr-char, which has neither ',' nor ':', so
#    the head is refused. Patch (rebuild lwan after it): make its valid_map accept an
#    RFC 9110 field-value (HTAB, SP, VCHAR, obs-text; no other control byte):
#        0, 2, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 127,
#        then sixteen 255s
#    and flip its self-test `assert(!lwan_header_value_is_valid(":"))` to expect true.
#  - Its worker threads run SCHED_IDLE: lwan_job_thread_init() sets the main thread
#    (the job thread) to SCHED_IDLE before the workers are created, and they inherit
#    it. On a shared core every other runnable task preempts them, so lwan looked
#    idle-bound (5.8k req/s at 1 KiB, each syscall taking 15-40 ms of wall time under
#    strace). This script sets each `lwan worker` thread back to SCHED_OTHER (chrt),
#    which is what lwan means (only its job and readahead threads are meant to idle).
#
# Usage: [LWAN=/path/to/lwan] [BASE=/path/to/zcopy] [ZCOPY_BIN=/path/to/zcopy] bench/io.sh [WRK_SECONDS] [ROUNDS]
# ZCOPY_BIN: the zcopy measured as epoll, epoll-fstat and uring (default: this tree's
# release build, built first).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib/work.sh
secs=${1:-5}
rounds=${2:-3}
for t in wrk taskset bc; do
  command -v "$t" >/dev/null || { echo "bench/io.sh needs $t" >&2; exit 2; }
done
if [ -n "${ZCOPY_BIN:-}" ]; then
  zcopy=$ZCOPY_BIN
else
  cargo build --release -q -p zcopy-cli
  zcopy=$PWD/target/release/zcopy
fi
bench_work io
mkdir -p "$work/www"
chmod 755 "$work" "$work/www"   # nginx workers run as an unprivileged user
head -c 1024 /dev/urandom > "$work/www/1k.bin"
head -c 65536 /dev/urandom > "$work/www/64k.bin"

servers=(epoll epoll-fstat uring)
declare -A port pid
port[epoll]=18091
port[epoll-fstat]=18092
port[uring]=18093
port[lwan]=18094
port[nginx]=18095
port[epoll-base]=18096
start_zcopy() { # name io [env...]
  local name=$1 io=$2 bin=$zcopy; shift 2
  if [ "$name" = epoll-base ]; then bin=$BASE; fi
  env "$@" taskset -c 0 "$bin" -q serve "$work/www" --listen "127.0.0.1:${port[$name]}" \
    --workers 1 --io "$io" > "$work/$name.out" 2>&1 &
  pid[$name]=$!
  pids+=($!)
}
start_zcopy epoll epoll
start_zcopy epoll-fstat epoll ZCOPY_DISABLE=inotify
start_zcopy uring uring
if [ -n "${BASE:-}" ]; then
  start_zcopy epoll-base epoll
  servers+=(epoll-base)
fi
if [ -n "${LWAN:-}" ]; then
  cat > "$work/lwan.conf" <<EOF
keep_alive_timeout = 15
quiet = true
threads = 1
listener 127.0.0.1:${port[lwan]}
site {
    serve_files / {
        path = $work/www
    }
}
EOF
  (cd "$work" && taskset -c 0 "$LWAN" -c "$work/lwan.conf" > "$work/lwan.out" 2>&1) &
  sleep 0.5
  pid[lwan]=$(pgrep -n -f "$LWAN -c $work/lwan.conf")
  pids+=("${pid[lwan]}")
  for t in /proc/"${pid[lwan]}"/task/*; do   # see the header: workers inherit SCHED_IDLE
    if [ "$(cat "$t/comm")" = "lwan worker" ]; then chrt -o -p 0 "${t##*/}"; fi
  done
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${port[lwan]}/64k.bin" || true)
  [ "$code" = 200 ] || echo "warning: lwan answers $code to a 64 KiB file (see the header's patch)" >&2
  servers+=(lwan)
fi
if command -v nginx >/dev/null; then
  mkdir -p "$work/nginx"
  cat > "$work/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  open_file_cache max=1000 inactive=20s;
  client_body_temp_path $work/nginx;
  proxy_temp_path $work/nginx;
  fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx;
  scgi_temp_path $work/nginx;
  server { listen 127.0.0.1:${port[nginx]}; root $work/www; }
}
EOF
  taskset -c 0 nginx -c "$work/nginx.conf" > "$work/nginx.out" 2>&1 &
  pid[nginx]=$!
  pids+=($!)
  servers+=(nginx)
fi
sleep 1

hz=$(getconf CLK_TCK)
# CPU seconds of a process, its threads and its children (nginx's worker): user
# and system time (fields 12, 13 of stat after the command) or both (12+13).
cpu() {
  local p t=0 f=${2:-'$12+$13'}
  for p in "$1" $(pgrep -P "$1" || true); do
    t=$((t + $(cat /proc/"$p"/task/*/stat 2>/dev/null | sed 's/.*) //' | awk "{s+=$f} END{print s+0}")))
  done
  echo "$t / $hz" | bc -l
}
declare -A reqs cpus ucpus bad
for f in 1k.bin 64k.bin; do
  for s in "${servers[@]}"; do reqs[$s.$f]=0; cpus[$s.$f]=0; ucpus[$s.$f]=0; bad[$s.$f]=; done
  for _ in $(seq "$rounds"); do
    for s in "${servers[@]}"; do
      c0=$(cpu "${pid[$s]}")
      u0=$(cpu "${pid[$s]}" '$12')
      out=$(taskset -c 1 wrk -t1 -c50 -d"${secs}s" "http://127.0.0.1:${port[$s]}/$f")
      c1=$(cpu "${pid[$s]}")
      u1=$(cpu "${pid[$s]}" '$12')
      if echo "$out" | grep -qE 'Non-2xx|Socket errors'; then
        # Not comparable (lwan answers 64 KiB files with 500 in some builds).
        bad[$s.$f]=$(echo "$out" | grep -E 'Non-2xx|Socket errors' | tr -s ' ' | head -1)
        echo "warning: $s $f: ${bad[$s.$f]}" >&2
      fi
      n=$(echo "$out" | awk '/requests in/ {print $1}')
      reqs[$s.$f]=$((${reqs[$s.$f]} + n))
      cpus[$s.$f]=$(echo "${cpus[$s.$f]} + $c1 - $c0" | bc -l)
      ucpus[$s.$f]=$(echo "${ucpus[$s.$f]} + $u1 - $u0" | bc -l)
    done
  done
done

mkdir -p bench/results
{
echo "# zcopy serve's I/O paths and peers, small files, $(uname -r), $(nproc) cores ($(date -u +%F))"
echo
echo "Each server 1 worker/thread on CPU 0, wrk -t1 -c50 on CPU 1, loopback;"
echo "\`bench/io.sh $secs $rounds\` ($rounds alternating rounds of ${secs}s per server and file)."
if [ -n "${BASE:-}" ]; then
  echo "epoll-base: ${BASE_NAME:-$BASE} (another build), --io epoll."
fi
if [ -n "${LWAN:-}" ]; then
  echo "lwan: its header-value check patched and its workers set to SCHED_OTHER (bench/io.sh's header)."
fi
echo
echo "User and system columns: the server's CPU per request, in microseconds."
echo
echo "| file | server | req/s | req per server CPU-s | req/CPU-s vs epoll | user µs/req | system µs/req |"
echo "|---|---|---|---|---|---|---|"
total=$((secs * rounds))
for f in 1k.bin 64k.bin; do
  base=$(echo "${reqs[epoll.$f]} / ${cpus[epoll.$f]}" | bc -l)
  for s in "${servers[@]}"; do
    if [ -n "${bad[$s.$f]}" ]; then
      printf '| %s | %s | not comparable: %s | | | | |\n' "$f" "$s" "${bad[$s.$f]}"
      continue
    fi
    rps=$(echo "${reqs[$s.$f]} / $total" | bc -l)
    per=$(echo "${reqs[$s.$f]} / ${cpus[$s.$f]}" | bc -l)
    user=$(echo "${ucpus[$s.$f]} * 1000000 / ${reqs[$s.$f]}" | bc -l)
    sys=$(echo "(${cpus[$s.$f]} - ${ucpus[$s.$f]}) * 1000000 / ${reqs[$s.$f]}" | bc -l)
    printf '| %s | %s | %.0f | %.0f | %.2f | %.2f | %.2f |\n' "$f" "$s" "$rps" "$per" \
      "$(echo "$per / $base" | bc -l)" "$user" "$sys"
  done
done
} | tee bench/results/io.md
