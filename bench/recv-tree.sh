#!/usr/bin/env bash
# zcopy recv's engines by file size: one `zcopy send` of a tree of same-size files to
# `zcopy recv --once --engine E`, over loopback, for E in direct, splice and auto. It is
# what set recv's DIRECT_FROM (auto writes with O_DIRECT from 1 MiB, splices below).
# Receiver on CPU 0, sender on CPU 1; rounds alternate the engines. Reports the
# receiver's CPU seconds (user + system, fsync included: recv fsyncs every file before
# it renames it into place) and wall seconds, medians over the rounds, and each
# engine's receiver CPU against splice's (median of per-round ratios). Every received
# tree is compared with the sent one.
# Usage: bench/recv-tree.sh [ROUNDS] (default 3). TREES="NAME COUNT SIZE;..." measures other
# trees (e.g. TREES="4m 50 4194304;8m 25 8388608"). ZCOPY_BIN=path: the zcopy measured
# (default: this tree's release build, built first). Writes bench/results/recv-tree.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib/work.sh
rounds=${1:-3}
[ -x /usr/bin/time ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null; }
if [ -n "${ZCOPY_BIN:-}" ]; then
  zcopy=$ZCOPY_BIN
else
  cargo build --release -q -p zcopy-cli
  zcopy=$PWD/target/release/zcopy
fi
bench_work recv-tree

# Trees: NAME COUNT SIZE
trees=("16m 16 16777216" "1m 200 1048576" "64k 1000 65536" "4k 200 4096")
if [ -n "${TREES:-}" ]; then IFS=';' read -ra trees <<<"$TREES"; fi
engines=(direct splice auto)
for t in "${trees[@]}"; do
  read -r name count size <<<"$t"
  mkdir -p "$work/src/$name"
  for i in $(seq 1 "$count"); do
    head -c "$size" /dev/urandom >"$work/src/$name/f$i"
  done
done
cat "$work"/src/*/* >/dev/null

# one TREE ENGINE: prints "wall recv_cpu"
port=0
one() {
  local tree=$1 engine=$2
  rm -rf "$work/out" && mkdir "$work/out"
  sync
  # A fresh port each run, below the ephemeral range (32768-) where clients' ports are:
  # a fixed one may still be in TIME_WAIT or taken by a test.
  port=$((20000 + RANDOM % 12000))
  local t0 t1
  /usr/bin/time -f "%U %S" -o "$work/recv.time" taskset -c 0 \
    "$zcopy" -q recv --once --engine "$engine" --listen "127.0.0.1:$port" --out "$work/out" >/dev/null &
  local rpid=$!
  pids=("$rpid")
  sleep 0.3
  t0=$(date +%s.%N)
  taskset -c 1 "$zcopy" -q send "$work/src/$tree" --to "127.0.0.1:$port"
  wait "$rpid"
  t1=$(date +%s.%N)
  diff -r "$work/src/$tree" "$work/out/$tree" >/dev/null
  echo "$(echo "$t1 - $t0" | bc -l) $(awk '{print $1+$2}' "$work/recv.time")"
}

declare -A W C
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
for r in $(seq 1 "$rounds"); do
  for t in "${trees[@]}"; do
    read -r name _ _ <<<"$t"
    # Rotate the order each round.
    for k in $(seq 0 $((${#engines[@]} - 1))); do
      e=${engines[$(((k + r) % ${#engines[@]}))]}
      one "$name" "$e" >"$work/res"
      read -r w c <"$work/res"
      W[$name/$e]+="$w "
      C[$name/$e]+="$c "
    done
  done
  echo "round $r done" >&2
done

{
  echo "# zcopy recv's engines by file size, loopback ($(uname -r), $(nproc) cores)"
  echo
  echo "\`bench/recv-tree.sh $rounds\` on $(date -u '+%Y-%m-%d %H:%M') UTC; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "One \`zcopy send\` of a tree to \`zcopy recv --once --engine E\`; receiver CPU includes its fsyncs."
  echo
  echo "| tree | engine | receiver CPU-s (median) | per round | wall s (median) | receiver CPU vs splice |"
  echo "|---|---|---|---|---|---|"
  for t in "${trees[@]}"; do
    read -r name count size <<<"$t"
    for e in "${engines[@]}"; do
      read -ra cs <<<"${C[$name/$e]}"
      read -ra ss <<<"${C[$name/splice]}"
      ratio=$(for i in "${!cs[@]}"; do echo "${cs[$i]} / ${ss[$i]}" | bc -l; done | median)
      printf '| %s x %s B | %s | %s | %s | %s | %.2fx |\n' "$count" "$size" "$e" \
        "$(printf '%s\n' "${cs[@]}" | median)" "${C[$name/$e]% }" \
        "$(printf '%s\n' ${W[$name/$e]} | median | xargs printf '%.2f')" "$ratio"
    done
  done
} | tee bench/results/recv-tree.md
