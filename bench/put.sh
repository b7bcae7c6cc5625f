#!/usr/bin/env bash
# PUT of one large file: zcopy serve --upload vs nginx (dav_methods PUT) and, when
# installed, dufs (`cargo install dufs`), side by side in one run (rounds
# interleaved). Over loopback, or with --veth (root) across a veth pair: the servers
# in one network namespace, curl in another, addresses from 198.18.0.0/15, both
# namespaces removed on exit. Servers pinned to CPU 0, curl to CPU 1. Reports
# wall-clock throughput and server CPU (user+sys of every thread, from /proc) per GB,
# and the medians.
#
#   bench/put.sh [--veth] [ZCOPY_BIN] [SIZE_MIB] [ROUNDS] [DIR]
#
# DIR is where uploads land (default: a tmpfs under /dev/shm, so the disk is not
# what is measured; give a disk directory to include write-back and zcopy's fsync).
# DUFS=path picks the dufs binary (default: dufs on PATH, else ~/.cargo/bin/dufs).
# ZCOPY_BASE=path adds a `base` row: another zcopy binary (e.g. main's), run beside
# the first in the same interleaved rounds, for before/after figures. IO=uring runs
# both zcopy servers with --io uring (default epoll); IO_BASE sets the base row's
# driver apart (ZCOPY_BASE=same binary IO=uring IO_BASE=epoll: the two drivers side
# by side). PORT0 (default 18801, four ports from it) and NS_TAG (namespace name
# prefix, default zcput) keep runs beside each other apart. curl's own CPU per GB is
# shown too (on loopback the TCP receive work of the server's socket runs on its CPU).
set -euo pipefail
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
ns_srv=${NS_TAG:-zcput}$$s
ns_cli=${NS_TAG:-zcput}$$c
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ $mode = veth ]; then
    ip netns del "$ns_srv" 2>/dev/null || true
    ip netns del "$ns_cli" 2>/dev/null || true
  fi
  rm -rf "$BASE"
}
trap cleanup EXIT
if [ $mode = veth ]; then
  [ "$(id -u)" = 0 ] || { echo "skipped: --veth needs root" >&2; exit 0; }
  net=$(( $$ % 16384 * 4 ))   # one /30 of 198.18.0.0/16 per run
  ADDR=198.18.$((net / 256)).$((net % 256 + 1))
  cli_addr=198.18.$((net / 256)).$((net % 256 + 2))
  ip netns add "$ns_srv"
  ip netns add "$ns_cli"
  ip link add veth0 netns "$ns_srv" type veth peer name veth1 netns "$ns_cli"
  ip -n "$ns_srv" addr add "$ADDR/30" dev veth0
  ip -n "$ns_cli" addr add "$cli_addr/30" dev veth1
  ip -n "$ns_srv" link set lo up
  ip -n "$ns_cli" link set lo up
  ip -n "$ns_srv" link set veth0 up
  ip -n "$ns_cli" link set veth1 up
  in_srv=(ip netns exec "$ns_srv")
  in_cli=(ip netns exec "$ns_cli")
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

measure() { # name pid port dir
  local name=$1 pid=$2 port=$3 dir=$4
  rm -f "$dir/up.bin"
  local c0 t0 code t1 c1
  c0=$(cpu_ticks "$pid")
  t0=$(date +%s.%N)
  code=$("${in_cli[@]}" /usr/bin/time -f "%U %S" -o "$BASE/curl.time" taskset -c 1 curl -s -o /dev/null -w '%{http_code}' -T "$SRC" "http://$ADDR:$port/up.bin")
  t1=$(date +%s.%N)
  c1=$(cpu_ticks "$pid")
  cmp -s "$SRC" "$dir/up.bin" || { echo "$name: upload differs ($code)" >&2; cat "$BASE/nginx.err" >&2; exit 1; }
  awk -v n="$name" -v c="$code" -v t0="$t0" -v t1="$t1" -v c0="$c0" -v c1="$c1" \
      -v mib="$MIB" -v hz="$tick" 'BEGIN {
        gb = mib * 1048576 / 1e9; s = t1 - t0; cpu = (c1 - c0) / hz;
        printf "%-6s %s  %.2f GB/s  server CPU %.2f s/GB", n, c, gb / s, cpu / gb }' | tee -a "$RESULTS"
  awk -v mib="$MIB" '{ printf "  client CPU %.2f s/GB\n", ($1 + $2) / (mib * 1048576 / 1e9) }' \
    "$BASE/curl.time" | tee -a "$RESULTS"
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
echo "PUT of $MIB MiB to $BASE over $mode ($ROUNDS rounds each, interleaved)"
for _ in $(seq "$ROUNDS"); do
  if [ -n "$ZBASE" ]; then measure base "$BPID" $PORT_B "$BASE/b"; fi
  measure zcopy "$ZPID" $PORT_Z "$BASE/z"
  measure nginx "$NW" $PORT_N "$BASE/n"
  if [ -n "$DUFS" ]; then measure dufs "$DPID" $PORT_D "$BASE/d"; fi
done
[ -n "$DUFS" ] || echo "(dufs not installed: cargo install dufs)"
echo "medians:"
for n in base zcopy nginx dufs; do
  { grep "^$n " "$RESULTS" || true; } | awk '{print $3, $7}' | sort -n | awk -v n="$n" '
    { tp[NR] = $1; } END { if (NR) printf "%-6s %.2f GB/s\n", n, tp[int((NR + 1) / 2)] }'
  { grep "^$n " "$RESULTS" || true; } | awk '{print $7}' | sort -n | awk -v n="$n" '
    { c[NR] = $1; } END { if (NR) printf "%-6s %.2f CPU s/GB\n", n, c[int((NR + 1) / 2)] }'
done
