#!/usr/bin/env bash
# zcopy send -> zcopy recv vs nc (netcat-openbsd) and socat, 1 GiB over loopback, side by
# side in one run: throughput and CPU-seconds per GB at each end. Receiver pinned to
# CPU 0, sender to CPU 1. zcopy recv fsyncs before it acknowledges; the peers don't,
# so their time includes a `sync` of the received file for a like-for-like figure.
# Three zcopy rows: `zcopy` as shipped (auto: to this local receiver, copied at send
# time, O_DIRECT writes in), `zcopy-lend` (--engine sendfile: by reference, under the lease
# verdict) and `zcopy-verify` (auto with --verify: XXH3-128 of each file at both ends).
# With --veth (root): the receivers run in one network namespace and the senders in
# another, joined by a veth pair (a receiver in a container); the namespaces are
# removed on exit. Writes bench/results/sendrecv[-veth].md.
# ZCOPY_BASE=path adds a `zcopy-base` row: another zcopy binary (e.g. main's) sending
# to its own receiver in the same runs, for before/after figures.
# ZCOPY_BIN=path: the zcopy measured (default: this tree's release build, built first).
# Usage: bench/sendrecv.sh [--veth] [SIZE_MIB] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib/veth.sh
source bench/lib/work.sh
mode=loopback
if [ "${1:-}" = --veth ]; then mode=veth; shift; fi
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
if [ -n "${ZCOPY_BIN:-}" ]; then
  zcopy=$ZCOPY_BIN
else
  cargo build --release -q -p zcopy-cli
  zcopy=$PWD/target/release/zcopy
fi
bench_work sendrecv
addr=127.0.0.1
in_r=""
in_s=""
if [ $mode = veth ]; then
  veth_up zcsr$$ 198.19
  in_r="${in_srv[*]}"
  in_s="${in_cli[*]}"
fi
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
  $in_r /usr/bin/time -f "%U %S" -o "$work/recv.time" taskset -c 0 bash -c "$recv_cmd" > /dev/null &
  local rpid=$!
  sleep 0.3
  $in_s /usr/bin/time -f "%U %S" -o "$work/send.time" taskset -c 1 bash -c "$send_cmd"
  wait $rpid
  t1=$(date +%s.%N)
  cmp "$work/src.bin" "$work/out/src.bin"
  echo "$(echo "$t1 - $t0 - 0.3" | bc -l) $(awk '{print $1+$2}' "$work/recv.time") $(awk '{print $1+$2}' "$work/send.time")"
}

declare -A W RC SC
tools=(zcopy zcopy-lend zcopy-verify nc socat)
zbase=${ZCOPY_BASE:-}
[ -z "$zbase" ] || tools=(zcopy-base "${tools[@]}")
add() { W[$1]+="$2 "; RC[$1]+="$3 "; SC[$1]+="$4 "; }
# run_tool NAME: one timed pair of NAME's receiver and sender, added to its figures.
run_tool() {
  local w r s
  port=$((port + 1))
  case $1 in
    zcopy*)
      # Every zcopy row is a receiver and a sender of one build; they differ in
      # the build (zcopy-base) or the sender's flags.
      local z=$zcopy flags=
      case $1 in
        zcopy-base) z=$zbase ;;
        zcopy-lend) flags="--engine sendfile" ;;
        zcopy-verify) flags=--verify ;;
      esac
      read -r w r s < <(run_pair \
        "$z -q recv --once --listen $addr:$port --out $work/out" \
        "$z -q send $flags $work/src.bin --to $addr:$port") ;;
    nc) read -r w r s < <(run_pair \
      "nc -l $addr $port > $work/out/src.bin && sync $work/out/src.bin" \
      "nc -N $addr $port < $work/src.bin") ;;
    socat) read -r w r s < <(run_pair \
      "socat -u TCP-LISTEN:$port,bind=$addr,reuseaddr OPEN:$work/out/src.bin,creat,trunc && sync $work/out/src.bin" \
      "socat -u OPEN:$work/src.bin TCP:$addr:$port") ;;
  esac
  add "$1" "$w" "$r" "$s"
}
# Each round starts one tool later than the one before (a rotating order), so
# whatever a pair leaves behind for the next (writeback, a freed 1 GiB file) does
# not fall on the same tool every round.
for i in $(seq "$runs"); do
  n=${#tools[@]}
  for j in $(seq 0 $((n - 1))); do
    run_tool "${tools[$(((i - 1 + j) % n))]}"
  done
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
suffix=""
[ $mode = veth ] && suffix=-veth
{
  echo "# zcopy send/recv vs nc and socat, ${size_mib} MiB over $mode ($(uname -r), $(nproc) cores)"
  echo
  echo "Median of $runs runs; receiver on CPU 0, sender on CPU 1; every tool's time includes"
  echo "making the received file durable (zcopy recv fsyncs; the peers are followed by sync)."
  echo "Run: \`bench/sendrecv.sh $([ $mode = veth ] && echo '--veth ')$size_mib $runs\` on $(date -u +%Y-%m-%d)."
  echo
  echo "| tool | GB/s | receiver CPU-s/GB | sender CPU-s/GB | both CPU-s/GB | throughput vs nc | CPU/GB vs nc (recv / send / both) |"
  echo "|---|---|---|---|---|---|---|"
  for t in "${tools[@]}"; do
    both=$(echo "${RCG[$t]} + ${SCG[$t]}" | bc -l)
    nboth=$(echo "${RCG[nc]} + ${SCG[nc]}" | bc -l)
    echo "| $t | $(p "${TP[$t]}") | $(p "${RCG[$t]}") | $(p "${SCG[$t]}") | $(p "$both") | $(p "$(echo "${TP[$t]} / ${TP[nc]}" | bc -l)")x | $(p "$(echo "${RCG[$t]} / ${RCG[nc]}" | bc -l)")x / $(p "$(echo "${SCG[$t]} / ${SCG[nc]}" | bc -l)")x / $(p "$(echo "$both / $nboth" | bc -l)")x |"
  done
  echo
  echo "Targets (zcopy vs nc): throughput >= 1.5x, CPU per GB <= 0.7x."
} | tee "bench/results/sendrecv$suffix.md"
