#!/usr/bin/env bash
# HTTP/2 DATA paths for file bodies, side by side in one run (issue 21, Build item 3):
#   zcopy-map    the default: frame headers + payloads from a mapping of the file,
#                many frames per sendmsg (one copy, by the kernel, at send time)
#   zcopy-pread  ZCOPY_DISABLE=mmap,sendfile: pread into the frame buffer, then
#                send (the path before; two copies)
#   zcopy-lend   (with RO=1) a file that can't change: frame header, then the
#                payload by sendfile (nginx's way); zcopy-map then runs with
#                ZCOPY_DISABLE=sendfile
#   nginx        1.22 `listen … http2`, sendfile on (9-byte header + sendfile per
#                frame), 1 worker (bench/h2-servers.sh has its configuration)
# All h2c (prior knowledge), 1 worker each, pinned to CPU 0, the client to CPU 1;
# rounds alternate between the servers so drift on a shared machine hits all.
#   h2load -c 50 -m 10 -t 1 -D SECONDS for 64k.bin and 1m.bin: requests/s and
#     requests per server CPU-second (utime+stime of every thread, from /proc)
#   curl --http2-prior-knowledge -o /dev/null of a 1 GiB file: MB/s and server
#     CPU-seconds per GB
# Medians over the rounds. With --veth (root): servers and clients in two network
# namespaces joined by a veth pair (198.18.0.0/15, unique names), removed on exit.
# ZCOPY: the binary (default: cargo build --release, target/release/zcopy).
# SERVERS: default "zcopy-map zcopy-pread nginx" ("zcopy-lend zcopy-map zcopy-pread
# nginx" with RO=1). BIG_MIB: default 1024.
# RO=1 (root, mkfs.erofs): the files are served from a read-only erofs image of them
# (mounted by loop), which zcopy may lend to any peer.
# Writes bench/results/h2-data[-ro][-veth].md.
# Usage: bench/h2-data.sh [--veth] [SECONDS] [ROUNDS]   (defaults 5, 3)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib/veth.sh
source bench/lib/work.sh
mode=loopback
if [ "${1:-}" = --veth ]; then mode=veth; shift; fi
secs=${1:-5}
rounds=${2:-3}
big_mib=${BIG_MIB:-1024}
for t in h2load curl taskset openssl bc; do
  command -v "$t" >/dev/null || { echo "bench/h2-data.sh needs $t" >&2; exit 2; }
done
if [ -z "${ZCOPY:-}" ]; then
  cargo build --release -q -p zcopy-cli
  ZCOPY=$PWD/target/release/zcopy
fi
source bench/h2-servers.sh
bench_atexit() {
  h2_stop
  if [ -n "${ro_mnt:-}" ]; then umount "$ro_mnt" 2>/dev/null || true; fi
}
bench_work h2data
addr=127.0.0.1
H2_CLIENT_PREFIX=()
H2_PREFIX=(taskset -c 0)
if [ $mode = veth ]; then
  veth_up h2data$$ 198.18
  H2_PREFIX=("${in_srv[@]}" taskset -c 0)
  H2_CLIENT_PREFIX=("${in_cli[@]}")
fi
cli=("${H2_CLIENT_PREFIX[@]}" taskset -c 1)

h2_setup "$work" "$addr" 127.0.0.1
head -c 1048576 /dev/urandom > "$work/www/1m.bin"
chmod 644 "$work/www/1m.bin"
[ "$big_mib" -gt 0 ] && h2_bigfile big.bin "$big_mib"
ro_mnt=
if [ "${RO:-}" = 1 ]; then
  [ "$(id -u)" = 0 ] || { echo "RO=1 needs root" >&2; exit 2; }
  mkfs.erofs --quiet "$work/www.erofs" "$work/www" >/dev/null
  rm -f "$work/www/big.bin"
  # Mounted over the directory every server serves (nginx too).
  mount -t erofs -o loop,ro "$work/www.erofs" "$work/www"
  ro_mnt=$work/www
fi
root=$work/www
[ "$big_mib" -gt 0 ] && cat "$root/big.bin" > /dev/null

servers=()
declare -A port
i=0
default="zcopy-map zcopy-pread nginx"
[ -n "$ro_mnt" ] && default="zcopy-lend $default"
for s in ${SERVERS:-$default}; do
  port[$s]=$((18600 + 2 * i))
  case $s in
  zcopy-map | zcopy-pread | zcopy-lend)
    env=()
    [ $s = zcopy-map ] && env=(ZCOPY_DISABLE=sendfile)
    [ $s = zcopy-pread ] && env=(ZCOPY_DISABLE=mmap,sendfile)
    env "${env[@]}" "${H2_PREFIX[@]}" "$ZCOPY" -q serve "$root" --workers 1 \
      --listen "$addr:${port[$s]}" > "$work/logs/$s.out" 2>&1 &
    H2_PID[$s]=$!
    H2_PIDS+=($!)
    ;;
  *)
    command -v "$s" >/dev/null || { echo "skipped: $s is not installed" >&2; continue; }
    h2_start "$s" "${port[$s]}" $((port[$s] + 1))
    ;;
  esac
  i=$((i + 1))
  servers+=("$s")
done
for s in "${servers[@]}"; do h2_wait "${port[$s]}"; done
for s in "${servers[@]}"; do
  h2_speaks h2c "${port[$s]}" || { echo "$s does not answer h2c" >&2; exit 1; }
done

hz=$(getconf CLK_TCK)
cpu() {
  local p t=0
  for p in "$1" $(pgrep -P "$1" || true); do
    t=$((t + $(cat /proc/"$p"/task/*/stat 2>/dev/null | sed 's/.*) //' | awk '{s+=$12+$13} END{print s+0}')))
  done
  echo "$t / $hz" | bc -l
}
declare -A vals  # "server.what" -> space-separated per-round figures
add() { vals[$1]="${vals[$1]:-} $2"; }
load() { # SERVER FILE
  local s=$1 f=$2 c0 c1 out n ok t
  c0=$(cpu "${H2_PID[$s]}")
  out=$(timeout $((secs + 30)) "${cli[@]}" h2load -c 50 -m 10 -t 1 -D "$secs" "http://$addr:${port[$s]}/$f" 2>&1) || true
  c1=$(cpu "${H2_PID[$s]}")
  n=$(echo "$out" | awk '/^requests:/ {print $8}')
  ok=$(echo "$out" | awk '/^requests:/ {print $10 + $12 + $14}')
  t=$(echo "$out" | awk '/^finished in/ {sub("s,", "", $3); print $3}')
  if [ -z "$n" ] || [ "$n" = 0 ] || [ "$ok" != 0 ]; then
    echo "warning: $s $f: $(echo "$out" | grep -E '^requests:' || echo "$out" | tail -1)" >&2
    return
  fi
  add "$s.$f.rps" "$(echo "$n / $t" | bc -l)"
  add "$s.$f.rpc" "$(echo "$n / ($c1 - $c0)" | bc -l)"
}
download() { # SERVER
  local s=$1 c0 c1 out
  c0=$(cpu "${H2_PID[$s]}")
  out=$("${cli[@]}" curl -s --http2-prior-knowledge --max-time 300 -o /dev/null \
    -w '%{http_code} %{http_version} %{size_download} %{time_total}' "http://$addr:${port[$s]}/big.bin") || true
  c1=$(cpu "${H2_PID[$s]}")
  set -- $out
  if [ "${1:-}" != 200 ] || [ "${2:-}" != 2 ] || [ "${3:-0}" != $((big_mib * 1048576)) ]; then
    echo "warning: $s big.bin: $out" >&2
    return
  fi
  add "$s.big.mbs" "$(echo "$3 / 1000000 / $4" | bc -l)"
  add "$s.big.cpg" "$(echo "($c1 - $c0) / ($3 / 1000000000)" | bc -l)"
}
for round in $(seq "$rounds"); do
  for f in 64k.bin 1m.bin; do
    for s in "${servers[@]}"; do load "$s" "$f"; done
  done
  if [ "$big_mib" -gt 0 ]; then
    for s in "${servers[@]}"; do download "$s"; done
  fi
  echo "round $round of $rounds done" >&2
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {if (NR == 0) print ""; else if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
med() { echo "${vals[$1]:-}" | median; }
fmt() { [ -n "$2" ] && printf "%.${1}f" "$2" || printf 'n/a'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "n/a"; else printf "%.2fx", a / b }'; }
suffix=
[ -n "$ro_mnt" ] && suffix=-ro
[ $mode = veth ] && suffix=$suffix-veth
out=bench/results/h2-data$suffix.md
mkdir -p bench/results
{
  echo "# HTTP/2 DATA paths for file bodies, h2c, $mode$([ -n "$ro_mnt" ] && echo ', files on a read-only erofs mount'), $(uname -r), $(nproc) cores"
  echo
  echo "\`$([ -n "$ro_mnt" ] && echo 'RO=1 ')bench/h2-data.sh$([ $mode = veth ] && echo ' --veth') $secs $rounds\`: medians of $rounds alternating rounds; server on CPU 0, client on CPU 1."
  echo
  echo "| server | 64 KiB req/s | 64 KiB req/CPU-s | 1 MiB req/s | 1 MiB req/CPU-s | 1 GiB MB/s | 1 GiB CPU-s/GB |"
  echo "|---|---|---|---|---|---|---|"
  for s in "${servers[@]}"; do
    echo "| $s | $(fmt 0 "$(med "$s.64k.bin.rps")") | $(fmt 0 "$(med "$s.64k.bin.rpc")") | $(fmt 0 "$(med "$s.1m.bin.rps")") | $(fmt 0 "$(med "$s.1m.bin.rpc")") | $(fmt 0 "$(med "$s.big.mbs")") | $(fmt 3 "$(med "$s.big.cpg")") |"
  done
  if [ -n "${port[zcopy-map]:-}" ]; then
    echo
    for b in zcopy-pread zcopy-lend nginx; do
      [ -n "${port[$b]:-}" ] || continue
      echo "zcopy-map vs $b: 64 KiB req/CPU-s $(ratio "$(med zcopy-map.64k.bin.rpc)" "$(med $b.64k.bin.rpc)"), 1 MiB req/CPU-s $(ratio "$(med zcopy-map.1m.bin.rpc)" "$(med $b.1m.bin.rpc)"), 1 GiB CPU-s/GB $(ratio "$(med zcopy-map.big.cpg)" "$(med $b.big.cpg)") (lower is better for the last)."
      echo
    done
  fi
} > "$out"
cat "$out"
