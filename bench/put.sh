#!/usr/bin/env bash
# PUT of one large file: zcopy serve --upload vs nginx (dav_methods PUT) and, when
# installed, dufs (`cargo install dufs`), side by side in one run (rounds
# interleaved). Over loopback, or with --veth (root) across a veth pair: the servers
# in one network namespace, the client in another, addresses from 198.18.0.0/15, both
# namespaces removed on exit. Servers pinned to CPU 0, the client to CPU 1. Reports
# wall-clock throughput and server CPU (user+sys of every thread, from /proc) per GB,
# and the medians.
#
#   bench/put.sh [--veth] [ZCOPY_BIN] [SIZE_MIB] [ROUNDS] [DIR]
#   bench/put.sh --summary OUTPUT   (the medians of a saved run's output again)
#
# DIR is where uploads land (default: a tmpfs under /dev/shm, so the disk is not
# what is measured; give a disk directory to include write-back and zcopy's fsync).
# DUFS=path picks the dufs binary (default: dufs on PATH, else ~/.cargo/bin/dufs).
# ZCOPY_BASE=path adds a `base` row: another zcopy binary (e.g. main's), run beside
# the first in the same interleaved rounds, for before/after figures. IO=uring runs
# both zcopy servers with --io uring (default epoll); IO_BASE sets the base row's
# driver apart (ZCOPY_BASE=same binary IO=uring IO_BASE=epoll: the two drivers side
# by side). PORT0 (default 18801, four ports from it) and NS_TAG (namespace name
# prefix, default zcput) keep runs beside each other apart. The client's own CPU per GB is
# shown too (on loopback the TCP receive work of the server's socket runs on its CPU).
# CLIENT picks the client, the same for every server (a list, e.g. "sendfile curl",
# runs each server with each client in every round):
#  - `sendfile` (default): bench/put_client.py, Python's socket.sendfile(): the
#    file's page-cache pages go to the socket without a copy through the client
#    (0.07-0.13 CPU-s/GB of its own against nginx; 0.25-0.35 against zcopy over
#    loopback and veth, where the kernel's TCP receive work for the server's socket
#    runs in the sender's context whenever the server does not hold the socket).
#    Timed by itself from connect to the status line (interpreter start-up left out).
#    The bytes arrive cold, never touched by a CPU, as a NIC's DMA leaves them.
#  - `curl` (`curl -T`): reads the file and copies it into the socket, 0.4
#    CPU-s/GB, a full core at 2.4 GB/s: over loopback it was the limit, not the
#    server; and its copy leaves the bytes in the shared cache, which makes a
#    server's own copy out of the socket cheaper. Results before put-2026-12-03.md
#    used it.
set -euo pipefail
# Medians of each column per server and client, then each server over nginx (same
# client): throughput, server CPU per GB, and server+client CPU per GB (on loopback
# and veth the kernel's TCP receive work runs on whichever side's context gets to
# it, so the split between the two moves; the sum does not).
summary() { # results file
  echo "medians (GB/s, then CPU s/GB: server, client, sum), and / nginx:"
  awk '
    function med(list,   a, k, i, j, t) {
      k = split(list, a, " ")
      for (i = 2; i <= k; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
      return a[int((k + 1) / 2)]
    }
    $5 == "GB/s" && $3 ~ /^[0-9]+$/ { key = $1 " " $2; tp[key] = tp[key] " " $4; sv[key] = sv[key] " " $8; cl[key] = cl[key] " " $12
      sm[key] = sm[key] " " $15; if (!(key in seen)) { seen[key] = 1; order[++n] = key } }
    END {
      for (i = 1; i <= n; i++) { k = order[i]; T[k] = med(tp[k]); S[k] = med(sv[k]); C[k] = med(cl[k]); U[k] = med(sm[k]) }
      for (i = 1; i <= n; i++) {
        k = order[i]; split(k, kk, " "); ng = "nginx " kk[2]
        printf "%-6s %-8s %.2f GB/s  server %.2f  client %.2f  sum %.2f", kk[1], kk[2], T[k], S[k], C[k], U[k]
        if (kk[1] != "nginx" && (ng in T)) printf "   / nginx: %.2fx throughput, %.2fx server CPU, %.2fx sum", T[k] / T[ng], S[k] / S[ng], U[k] / U[ng]
        printf "\n"
      }
    }' "$1"
}
if [ "${1:-}" = --summary ]; then summary "$2"; exit; fi
source "$(dirname "$0")/lib/veth.sh"
source "$(dirname "$0")/lib/work.sh"
mode=lo
if [ "${1:-}" = --veth ]; then mode=veth; shift; fi
ZCOPY=${1:-target/release/zcopy}
MIB=${2:-1024}
ROUNDS=${3:-3}
BASE=${4:-/dev/shm/zcopy-put-bench}
DUFS=${DUFS:-$(command -v dufs || echo "$HOME/.cargo/bin/dufs")}
[ -x "$DUFS" ] || DUFS=
PORT0=${PORT0:-18801}   # four ports from here (another run beside this one: another PORT0)
PORT_Z=$PORT0
PORT_N=$((PORT0 + 1))
PORT_D=$((PORT0 + 2))
PORT_B=$((PORT0 + 3))
ZBASE=${ZCOPY_BASE:-}
rm -rf "$BASE"
mkdir -p "$BASE/b" "$BASE/z" "$BASE/n" "$BASE/d" "$BASE/ntmp" "$BASE/src"
SRC=$BASE/src/body.bin
head -c $((MIB * 1024 * 1024)) /dev/urandom > "$SRC"
cat "$SRC" > /dev/null

in_srv=()
in_cli=()
ADDR=127.0.0.1
bench_atexit() { wait 2>/dev/null; }
work=$BASE
bench_trap
if [ $mode = veth ]; then
  veth_up "${NS_TAG:-zcput}$$" 198.18
  ADDR=$addr
fi

cat > "$BASE/nginx.conf" <<EOF
user root;
worker_processes 1;
daemon off;
pid $BASE/nginx.pid;
error_log $BASE/nginx.err;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path $BASE/ntmp;
  client_max_body_size 0;
  server {
    listen $ADDR:$PORT_N;
    root $BASE/n;
    location / { dav_methods PUT; create_full_put_path off; }
  }
}
EOF

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tick=$(getconf CLK_TCK)
RESULTS=$BASE/results.txt
: > "$RESULTS"

CLIENT=${CLIENT:-sendfile}
PUT_CLIENT=$(cd "$(dirname "$0")" && pwd)/put_client.py
for c in $CLIENT; do
  case $c in curl | sendfile) ;; *) echo "CLIENT: curl and/or sendfile" >&2; exit 2 ;; esac
done
measure() { # name pid port dir client
  local name=$1 pid=$2 port=$3 dir=$4 client=$5
  rm -f "$dir/up.bin"
  local c0 t0 code t1 c1 secs ccpu out
  c0=$(cpu_ticks "$pid")
  if [ "$client" = curl ]; then
    t0=$(date +%s.%N)
    code=$("${in_cli[@]}" /usr/bin/time -f "%U %S" -o "$BASE/curl.time" taskset -c 1 curl -s -o /dev/null -w '%{http_code}' -T "$SRC" "http://$ADDR:$port/up.bin")
    t1=$(date +%s.%N)
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
    ccpu=$(awk '{ print $1 + $2 }' "$BASE/curl.time")
  else
    out=$("${in_cli[@]}" taskset -c 1 python3 "$PUT_CLIENT" "$ADDR" "$port" /up.bin "$SRC")
    read -r code secs ccpu <<< "$out"
  fi
  c1=$(cpu_ticks "$pid")
  cmp -s "$SRC" "$dir/up.bin" || { echo "$name: upload differs ($code)" >&2; cat "$BASE/nginx.err" >&2; exit 1; }
  awk -v n="$name" -v cl="$client" -v c="$code" -v s="$secs" -v cc="$ccpu" -v c0="$c0" \
      -v c1="$c1" -v mib="$MIB" -v hz="$tick" 'BEGIN {
        gb = mib * 1048576 / 1e9; cpu = (c1 - c0) / hz;
        printf "%-6s %-8s %s  %.2f GB/s  server CPU %.2f s/GB  client CPU %.2f s/GB  sum %.2f s/GB\n",
          n, cl, c, gb / s, cpu / gb, cc / gb, (cpu + cc) / gb }' | tee -a "$RESULTS"
}

"${in_srv[@]}" taskset -c 0 "$ZCOPY" serve "$BASE/z" --listen "$ADDR:$PORT_Z" --upload \
  --allow-anonymous-writes --max-upload-size 64G --io "${IO:-epoll}" -q > /dev/null 2>&1 &
ZPID=$!; pids+=("$ZPID")
if [ -n "$ZBASE" ]; then
  "${in_srv[@]}" taskset -c 0 "$ZBASE" serve "$BASE/b" --listen "$ADDR:$PORT_B" --upload \
    --allow-anonymous-writes --max-upload-size 64G --io "${IO_BASE:-${IO:-epoll}}" -q > /dev/null 2>&1 &
  BPID=$!; pids+=("$BPID")
fi
"${in_srv[@]}" taskset -c 0 nginx -c "$BASE/nginx.conf" &
NPID=$!; pids+=("$NPID")
if [ -n "$DUFS" ]; then
  "${in_srv[@]}" taskset -c 0 "$DUFS" "$BASE/d" -b "$ADDR" -p $PORT_D --allow-upload > /dev/null 2>&1 &
  DPID=$!; pids+=("$DPID")
fi
sleep 1
# nginx's master forks the worker that does the work: measure the worker.
NW=$(pgrep -P "$NPID" | head -1)
echo "PUT of $MIB MiB to $BASE over $mode with $CLIENT ($ROUNDS rounds each, interleaved)"
for _ in $(seq "$ROUNDS"); do
  for c in $CLIENT; do
    if [ -n "$ZBASE" ]; then measure base "$BPID" $PORT_B "$BASE/b" "$c"; fi
    measure zcopy "$ZPID" $PORT_Z "$BASE/z" "$c"
    measure nginx "$NW" $PORT_N "$BASE/n" "$c"
    if [ -n "$DUFS" ]; then measure dufs "$DPID" $PORT_D "$BASE/d" "$c"; fi
  done
done
[ -n "$DUFS" ] || echo "(dufs not installed: cargo install dufs)"
summary "$RESULTS"
