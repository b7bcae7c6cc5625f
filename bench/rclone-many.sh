#!/usr/bin/env bash
# Many small files uploaded through rclone's webdav backend: `rclone copy` of a tree
# of FILES files of SIZE bytes (100 per folder) to `zcopy serve --webdav` and to
# `dufs -A`, side by side in one run (rounds interleaved, each into a fresh folder),
# over loopback. Servers pinned to CPU 0, rclone to CPU 1. Reports wall time and
# server CPU (user+sys of every thread, from /proc) per round and their medians, and
# `rclone check`s the last round's upload on each server.
#
#   bench/rclone-many.sh [ZCOPY_BIN] [FILES] [ROUNDS] [DIR]
#
# FILES defaults to 10000, ROUNDS to 1, DIR (the served roots and the local tree) to
# a tmpfs under /dev/shm (give a disk directory to include the disk: zcopy fsyncs
# every upload before it renames it into place, dufs does not). SIZE=bytes (default
# 4096). RCLONE_FLAGS adds flags to every rclone copy (e.g. "--transfers 8").
# ZCOPY_BASE=path adds a `base` row (another zcopy binary, for before/after).
# DUFS=path picks dufs (default: on PATH, else ~/.cargo/bin/dufs). PORT0 (default
# 18821) is the first of three ports.
set -euo pipefail
source "$(dirname "$0")/lib/work.sh"
ZCOPY=${1:-target/release/zcopy}
FILES=${2:-10000}
ROUNDS=${3:-1}
BASE=${4:-/dev/shm/zcopy-rclone-many}
SIZE=${SIZE:-4096}
DUFS=${DUFS:-$(command -v dufs || echo "$HOME/.cargo/bin/dufs")}
[ -x "$DUFS" ] || { echo "dufs not installed (cargo install dufs)" >&2; exit 2; }
command -v rclone >/dev/null || { echo "rclone not installed (apt-get install rclone)" >&2; exit 2; }
PORT0=${PORT0:-18821}
ZBASE=${ZCOPY_BASE:-}
rm -rf "$BASE"
mkdir -p "$BASE/z" "$BASE/d" "$BASE/b" "$BASE/tree"
python3 - "$BASE/tree" "$FILES" "$SIZE" <<'PY'
import os, sys
root, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    d = os.path.join(root, "d%03d" % (i // 100))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%05d.bin" % i), "wb") as f:
        f.write(os.urandom(size))
PY

bench_atexit() { wait 2>/dev/null; }
work=$BASE
bench_trap
taskset -c 0 "$ZCOPY" serve "$BASE/z" --listen "127.0.0.1:$PORT0" --webdav -q >/dev/null 2>&1 &
ZPID=$!; pids+=("$ZPID")
taskset -c 0 "$DUFS" "$BASE/d" -A -b 127.0.0.1 -p $((PORT0 + 1)) >/dev/null 2>&1 &
DPID=$!; pids+=("$DPID")
if [ -n "$ZBASE" ]; then
  taskset -c 0 "$ZBASE" serve "$BASE/b" --listen "127.0.0.1:$((PORT0 + 2))" --webdav -q >/dev/null 2>&1 &
  BPID=$!; pids+=("$BPID")
fi
sleep 1
export RCLONE_CONFIG=/dev/null
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tick=$(getconf CLK_TCK)
RESULTS=$BASE/results.txt
: > "$RESULTS"

measure() { # name pid port round
  local name=$1 pid=$2 port=$3 round=$4 c0 t0 t1 c1
  c0=$(cpu_ticks "$pid"); t0=$(date +%s.%N)
  # shellcheck disable=SC2086
  RCLONE_WEBDAV_URL="http://127.0.0.1:$port/" taskset -c 1 rclone copy ${RCLONE_FLAGS:-} \
    "$BASE/tree" ":webdav:run$round" || { echo "$name: rclone copy failed" >&2; exit 1; }
  t1=$(date +%s.%N); c1=$(cpu_ticks "$pid")
  awk -v n="$name" -v f="$FILES" -v t0="$t0" -v t1="$t1" -v c0="$c0" -v c1="$c1" -v hz="$tick" 'BEGIN {
    s = t1 - t0; cpu = (c1 - c0) / hz;
    printf "%-6s %7.2f s  %6.0f files/s  server CPU %.2f s (%.0f us/file)\n", n, s, f / s, cpu, cpu / f * 1e6 }' \
    | tee -a "$RESULTS"
}

echo "rclone copy of $FILES files of $SIZE bytes to $BASE over loopback ($ROUNDS rounds, interleaved)"
for r in $(seq "$ROUNDS"); do
  if [ -n "$ZBASE" ]; then measure base "$BPID" $((PORT0 + 2)) "$r"; fi
  measure zcopy "$ZPID" "$PORT0" "$r"
  measure dufs "$DPID" $((PORT0 + 1)) "$r"
done
for s in zcopy:$PORT0 dufs:$((PORT0 + 1)); do
  echo -n "${s%%:*}: "
  RCLONE_WEBDAV_URL="http://127.0.0.1:${s#*:}/" rclone check "$BASE/tree" ":webdav:run$ROUNDS" 2>&1 \
    | grep -E "differences found|matching files" | tr '\n' ' '
  echo
done
echo "medians:"
for n in base zcopy dufs; do
  { grep "^$n " "$RESULTS" || true; } | awk '{print $2, $8}' | sort -n | awk -v n="$n" '
    { t[NR] = $1; c[NR] = $2 } END { if (NR) printf "%-6s %.2f s wall\n", n, t[int((NR + 1) / 2)] }'
  { grep "^$n " "$RESULTS" || true; } | awk '{print $8}' | sort -n | awk -v n="$n" '
    { c[NR] = $1 } END { if (NR) printf "%-6s %.2f s server CPU\n", n, c[int((NR + 1) / 2)] }'
done
