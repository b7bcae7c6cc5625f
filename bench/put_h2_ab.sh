#!/usr/bin/env bash
# An h2c upload to two zcopy builds side by side (e.g. before and after a change to
# the receive path): PUT of SIZE_MIB from tmpfs with curl --http2-prior-knowledge,
# in alternating rounds; each server 1 worker pinned to CPU 0 (IO=uring by default,
# IO=epoll for the other driver), curl pinned to CPU 1, uploads land in tmpfs. Prints
# each round's throughput and server CPU-s per GiB (utime+stime from /proc), checks
# every upload byte for byte, and the medians.
# Usage: bench/put_h2_ab.sh NEW_BIN BASE_BIN [SIZE_MIB] [ROUNDS]
# Everything listens on 127.0.0.1, is bounded in time and stops by itself.
set -euo pipefail
new=$1; base=$2; mib=${3:-256}; rounds=${4:-10}; io=${IO:-uring}
. "$(dirname "$0")/lib/work.sh"
bench_work put-h2-ab "/dev/shm"
src=$work/src.bin
head -c "$((mib << 20))" /dev/urandom > "$src"
tck=$(getconf CLK_TCK)
declare -A pid port bin=([new]=$new [base]=$base) cpus mbs
i=0
for n in new base; do
  mkdir -p "$work/$n"
  port[$n]=$((18650 + i)); i=$((i + 1))
  taskset -c 0 "${bin[$n]}" -q serve "$work/$n" --listen "127.0.0.1:${port[$n]}" --upload --workers 1 --io "$io" >/dev/null 2>&1 &
  pids+=($!); pid[$n]=$!
done
sleep 1
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
for r in $(seq "$rounds"); do
  for n in new base; do
    c0=$(cpu "${pid[$n]}")
    read -r code speed < <(taskset -c 1 curl -s -o /dev/null -w '%{http_code} %{speed_upload}\n' \
      --http2-prior-knowledge -T "$src" "http://127.0.0.1:${port[$n]}/up.bin")
    c1=$(cpu "${pid[$n]}")
    [ "$code" = 201 ] || { echo "$n: status $code" >&2; exit 1; }
    cmp -s "$src" "$work/$n/up.bin" || { echo "$n: wrong bytes" >&2; exit 1; }
    rm -f "$work/$n/up.bin"
    c=$(echo "($c1 - $c0) / $tck * 1024 / $mib" | bc -l); m=$(echo "$speed / 1000000" | bc -l)
    cpus[$n]+="$c "; mbs[$n]+="$m "
    printf 'round %d %s: %.0f MB/s, %.3f server CPU-s per GiB\n' "$r" "$n" "$m" "$c"
  done
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
for n in new base; do
  printf 'median %s: %.0f MB/s, %.3f server CPU-s per GiB (%s MiB h2c PUT, --io %s, %d rounds)\n' \
    "$n" "$(echo "${mbs[$n]}" | median)" "$(echo "${cpus[$n]}" | median)" "$mib" "$io" "$rounds"
done
