#!/bin/sh
# Many small files up through rclone's webdav backend: zcopy serve --webdav vs dufs -A,
# side by side in one run over loopback. Each round gives each server a fresh empty
# root and times `rclone copy` of the same tree (FILES files of 4 KiB, 100 per folder),
# then `rclone check` must find no difference. Servers on CPU 0, rclone on CPU 1.
# Reports wall-clock seconds and server CPU seconds (user+sys from /proc) per round,
# and the medians' ratios zcopy/dufs.
#
#   bench/rclone-many.sh [ZCOPY_BIN] [FILES] [ROUNDS] [DIR]
#
# rclone 1.60's webdav backend starts its calls at least 10 ms apart (its pacer; no
# flag to change it before 1.62), so the wall time is bounded below by ~10 ms per
# call (a PUT per file, an MKCOL and PROPFINDs per folder) for both servers: read
# the server CPU beside it. DIR (default under /dev/shm) holds the roots and the tree.
set -eu
ZCOPY=${1:-target/release/zcopy}
FILES=${2:-10000}
ROUNDS=${3:-1}
BASE=${4:-/dev/shm/zcopy-rclone-many}
PZ=18821
PD=18822
command -v rclone >/dev/null || { echo "rclone not installed (apt-get install rclone)" >&2; exit 2; }
command -v dufs >/dev/null || { echo "dufs not installed (cargo install dufs)" >&2; exit 2; }
rm -rf "$BASE"
mkdir -p "$BASE/tree"
i=0
while [ $i -lt "$FILES" ]; do
    d="$BASE/tree/d$((i / 100))"
    [ -d "$d" ] || mkdir "$d"
    head -c 4096 /dev/urandom > "$d/f$i"
    i=$((i + 1))
done
PIDS=""
trap 'kill $PIDS 2>/dev/null; rm -rf "$BASE"' EXIT
export RCLONE_CONFIG=/dev/null
tick=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

start() { # name root -> sets PID
    case $1 in
    zcopy) taskset -c 0 "$ZCOPY" -q serve "$2" --listen "127.0.0.1:$PZ" --webdav --workers 1 >/dev/null 2>&1 & ;;
    dufs) taskset -c 0 dufs -A -b 127.0.0.1 -p "$PD" "$2" >/dev/null 2>&1 & ;;
    esac
    PID=$!
    PIDS="$PIDS $PID"
    sleep 0.5
}

for r in $(seq "$ROUNDS"); do
    for name in zcopy dufs; do
        root="$BASE/root-$name-$r"
        mkdir -p "$root"
        start "$name" "$root"
        port=$PZ; [ "$name" = dufs ] && port=$PD
        url="http://127.0.0.1:$port/"
        c0=$(cpu_ticks "$PID"); t0=$(date +%s.%N)
        taskset -c 1 rclone copy --webdav-url "$url" "$BASE/tree" :webdav:up >/dev/null 2>&1 \
            || { echo "$name: rclone copy failed" >&2; exit 1; }
        t1=$(date +%s.%N); c1=$(cpu_ticks "$PID")
        taskset -c 1 rclone check --webdav-url "$url" "$BASE/tree" :webdav:up >/dev/null 2>&1 \
            || { echo "$name: rclone check found differences" >&2; exit 1; }
        kill "$PID"; wait "$PID" 2>/dev/null || true
        rm -rf "$root"
        echo "$name $r $t0 $t1 $c0 $c1" | awk -v hz="$tick" '{printf "%s round %s: %.2f s, server CPU %.2f s\n", $1, $2, $4 - $3, ($6 - $5) / hz}'
    done
done | tee "$BASE.out"
awk '
    { split($0, a, " "); name = a[1]; s = a[4] + 0; cpu = a[8] + 0; n[name]++; S[name, n[name]] = s; C[name, n[name]] = cpu }
    function med(arr, name, k,   i, j, t, v) {
        for (i = 1; i <= k; i++) v[i] = arr[name, i]
        for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
        return (k % 2) ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2
    }
    END {
        zs = med(S, "zcopy", n["zcopy"]); ds = med(S, "dufs", n["dufs"])
        zc = med(C, "zcopy", n["zcopy"]); dc = med(C, "dufs", n["dufs"])
        printf "median: zcopy %.2f s (CPU %.2f s), dufs %.2f s (CPU %.2f s); time zcopy/dufs %.2f, server CPU zcopy/dufs %.2f\n", zs, zc, ds, dc, zs / ds, zc / dc
    }' "$BASE.out"
rm -f "$BASE.out"
