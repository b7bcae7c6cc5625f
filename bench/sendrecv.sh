#!/usr/bin/env bash
# zcopy send -> zcopy recv vs nc (netcat-openbsd) and socat, 1 GiB over loopback, side by
# side in one run: throughput and CPU-seconds per GB at each end. Receiver pinned to
# CPU 0, sender to CPU 1. zcopy recv fsyncs before it acknowledges; the peers don't,
# so their time includes a `sync` of the received file for a like-for-like figure.
# Writes bench/results/sendrecv.md. Usage: bench/sendrecv.sh [SIZE_MIB] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
runs=${2:-3}
need=()
for t in nc:netcat-openbsd socat:socat taskset:util-linux; do
  command -v "${t%%:*}" >/dev/null || need+=("${t#*:}")
done
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build --release -q -p zcopy-cli
zcopy=$PWD/target/release/zcopy
work=$(mktemp -d "${TMPDIR:-/tmp}/zcopy-sendrecv.XXXXXX")
trap 'rm -rf "$work"' EXIT
head -c $((size_mib << 20)) /dev/urandom > "$work/src.bin"
cat "$work/src.bin" > /dev/null
bytes=$((size_mib << 20))
port=19100

# run NAME RECV_CMD SEND_CMD: both under /usr/bin/time; prints "wall recv_cpu send_cpu"
run_pair() {
  local recv_cmd=$1 send_cmd=$2
  rm -rf "$work/out" && mkdir "$work/out"
  sync
  local t0 t1
  t0=$(date +%s.%N)
  /usr/bin/time -f "%U %S" -o "$work/recv.time" taskset -c 0 bash -c "$recv_cmd" > /dev/null &
  local rpid=$!
  sleep 0.3
  /usr/bin/time -f "%U %S" -o "$work/send.time" taskset -c 1 bash -c "$send_cmd"
  wait $rpid
  t1=$(date +%s.%N)
  cmp "$work/src.bin" "$work/out/src.bin"
  echo "$(echo "$t1 - $t0 - 0.3" | bc -l) $(awk '{print $1+$2}' "$work/recv.time") $(awk '{print $1+$2}' "$work/send.time")"
}

declare -A W RC SC
tools=(zcopy nc socat)
for i in $(seq "$runs"); do
  port=$((port + 1))
  read -r w r s < <(run_pair \
    "$zcopy -q recv --once --listen 127.0.0.1:$port --out $work/out" \
    "$zcopy -q send $work/src.bin --to 127.0.0.1:$port")
  W[zcopy]+="$w "; RC[zcopy]+="$r "; SC[zcopy]+="$s "
  port=$((port + 1))
  read -r w r s < <(run_pair \
    "nc -l 127.0.0.1 $port > $work/out/src.bin && sync $work/out/src.bin" \
    "nc -N 127.0.0.1 $port < $work/src.bin")
  W[nc]+="$w "; RC[nc]+="$r "; SC[nc]+="$s "
  port=$((port + 1))
  read -r w r s < <(run_pair \
    "socat -u TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr OPEN:$work/out/src.bin,creat,trunc && sync $work/out/src.bin" \
    "socat -u OPEN:$work/src.bin TCP:127.0.0.1:$port")
  W[socat]+="$w "; RC[socat]+="$r "; SC[socat]+="$s "
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
gb=$(echo "$bytes / 1000000000" | bc -l)
declare -A TP RCG SCG
for t in "${tools[@]}"; do
  TP[$t]=$(echo "$gb / $(echo "${W[$t]}" | median)" | bc -l)
  RCG[$t]=$(echo "$(echo "${RC[$t]}" | median) / $gb" | bc -l)
  SCG[$t]=$(echo "$(echo "${SC[$t]}" | median) / $gb" | bc -l)
done
p() { printf '%.2f' "$1"; }
mkdir -p bench/results
{
  echo "# zcopy send/recv vs nc and socat, ${size_mib} MiB over loopback ($(uname -r), $(nproc) cores)"
  echo
  echo "Median of $runs runs; receiver on CPU 0, sender on CPU 1; every tool's time includes"
  echo "making the received file durable (zcopy recv fsyncs; the peers are followed by sync)."
  echo "Run: \`bench/sendrecv.sh $size_mib $runs\` on $(date -u +%Y-%m-%d)."
  echo
  echo "| tool | GB/s | receiver CPU-s/GB | sender CPU-s/GB | zcopy throughput ratio | zcopy CPU ratio (recv / send) |"
  echo "|---|---|---|---|---|---|"
  for t in "${tools[@]}"; do
    if [ "$t" = zcopy ]; then ratios="| |"; else
      ratios="| $(p "$(echo "${TP[zcopy]} / ${TP[$t]}" | bc -l)")x | $(p "$(echo "${RCG[zcopy]} / ${RCG[$t]}" | bc -l)")x / $(p "$(echo "${SCG[zcopy]} / ${SCG[$t]}" | bc -l)")x |"
    fi
    echo "| $t | $(p "${TP[$t]}") | $(p "${RCG[$t]}") | $(p "${SCG[$t]}") $ratios"
  done
  echo
  echo "Targets: throughput >= 1.5x, CPU per GB <= 0.7x."
} | tee bench/results/sendrecv.md
