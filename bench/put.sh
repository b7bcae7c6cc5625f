#!/bin/sh
# PUT of one large file: zcopy serve --upload vs nginx (dav_methods PUT), side by
# side in one run, over loopback. Server pinned to CPU 0, curl to CPU 1. Reports
# wall-clock throughput and server CPU (user+sys from /proc) per GB.
#
#   bench/put.sh [ZCOPY_BIN] [SIZE_MIB] [ROUNDS] [DIR]
#
# DIR is where uploads land (default: a tmpfs under /dev/shm, so the disk is not
# what is measured; give a disk directory to include write-back and zcopy's fsync).
set -eu
ZCOPY=${1:-target/release/zcopy}
MIB=${2:-1024}
ROUNDS=${3:-3}
BASE=${4:-/dev/shm/zcopy-put-bench}
PORT_Z=18801
PORT_N=18802
rm -rf "$BASE"
mkdir -p "$BASE/z" "$BASE/n" "$BASE/ntmp" "$BASE/src"
SRC=$BASE/src/body.bin
head -c $((MIB * 1024 * 1024)) /dev/urandom > "$SRC"
cat "$SRC" > /dev/null

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
    listen 127.0.0.1:$PORT_N;
    root $BASE/n;
    location / { dav_methods PUT; create_full_put_path off; }
  }
}
EOF

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tick=$(getconf CLK_TCK)

measure() { # name pid port dir
    name=$1; pid=$2; port=$3; dir=$4
    for r in $(seq "$ROUNDS"); do
        rm -f "$dir/up.bin"
        c0=$(cpu_ticks "$pid")
        t0=$(date +%s.%N)
        code=$(taskset -c 1 curl -s -o /dev/null -w '%{http_code}' -T "$SRC" "http://127.0.0.1:$port/up.bin")
        t1=$(date +%s.%N)
        c1=$(cpu_ticks "$pid")
        cmp -s "$SRC" "$dir/up.bin" || { echo "$name: upload differs ($code)" >&2; cat "$BASE/nginx.err" >&2; exit 1; }
        awk -v n="$name" -v r="$r" -v c="$code" -v t0="$t0" -v t1="$t1" -v c0="$c0" -v c1="$c1" \
            -v mib="$MIB" -v hz="$tick" 'BEGIN {
              gb = mib * 1048576 / 1e9; s = t1 - t0; cpu = (c1 - c0) / hz;
              printf "%-6s round %d: %s  %.2f GB/s  server CPU %.2f s/GB\n", n, r, c, gb / s, cpu / gb }'
    done
}

taskset -c 0 "$ZCOPY" serve "$BASE/z" --listen 127.0.0.1:$PORT_Z --upload --io epoll -q > /dev/null 2>&1 &
ZPID=$!
taskset -c 0 nginx -c "$BASE/nginx.conf" &
NPID=$!
trap 'kill $ZPID $NPID 2>/dev/null; wait 2>/dev/null; rm -rf "$BASE"' EXIT
sleep 1
# nginx's master forks the worker that does the work: measure the worker.
NW=$(pgrep -P "$NPID" | head -1)
echo "PUT of $MIB MiB to $BASE ($ROUNDS rounds each, interleaved)"
for r in $(seq "$ROUNDS"); do
    ROUNDS=1 measure zcopy "$ZPID" $PORT_Z "$BASE/z"
    ROUNDS=1 measure nginx "$NW" $PORT_N "$BASE/n"
done
