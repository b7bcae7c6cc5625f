#!/usr/bin/env bash
# zcopy cp vs GNU cp on one file (default 1 GiB), measured side by side in one run
# with hyperfine (warm-up, 10 runs each, alternating). Prints the ratio and writes
# bench/results/cp.md. Usage: bench/cp.sh [SIZE_MIB]
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
command -v hyperfine >/dev/null && [ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq hyperfine time >/dev/null; }
cargo build --release -q -p zcopy-cli
zcopy=$PWD/target/release/zcopy
work=$(mktemp -d "${TMPDIR:-/tmp}/zcopy-cp-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
head -c $((size_mib << 20)) /dev/urandom > "$work/src"
mkdir -p bench/results
hyperfine --warmup 2 --runs 10 -N \
  --prepare "rm -f $work/dst; sync" \
  --export-markdown "$work/table.md" --export-json "$work/result.json" \
  -n "GNU cp" "cp $work/src $work/dst" \
  -n "zcopy cp" "$zcopy cp --progress never $work/src $work/dst"
cmp "$work/src" "$work/dst"
# CPU time (user + system) of each, alternating, 7 pairs: unlike wall time it does not
# swing with the disk's writeback of earlier runs.
cpu_of() { /usr/bin/time -f "%U %S" -o "$work/t" "$@" >/dev/null && awk '{print $1 + $2}' "$work/t"; }
cp_cpu=(); z_cpu=()
for _ in 1 2 3 4 5 6 7; do
  rm -f "$work/dst"; sync; cp_cpu+=("$(cpu_of cp "$work/src" "$work/dst")")
  rm -f "$work/dst"; sync; z_cpu+=("$(cpu_of "$zcopy" cp --progress never "$work/src" "$work/dst")")
done
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
cpu_ratio=$(echo "$(med "${z_cpu[@]}") / $(med "${cp_cpu[@]}")" | bc -l | xargs printf '%.2f')
ratio=$(python3 -c "import json;r=json.load(open('$work/result.json'))['results'];print(f\"{r[1]['median']/r[0]['median']:.2f}\")")
{
  echo "# zcopy cp vs GNU cp, ${size_mib} MiB, page cache warm, ext4 ($(uname -r), $(nproc) cores)"
  echo
  cat "$work/table.md"
  echo
  echo "zcopy cp / GNU cp (median time): **${ratio}x** (target <= 1.0x)"
  echo
  echo "CPU seconds, median of 7 alternating pairs: GNU cp $(med "${cp_cpu[@]}") s, zcopy cp $(med "${z_cpu[@]}") s: **${cpu_ratio}x**."
  echo "Wall time on this VM swings with the writeback of earlier runs' dirty pages (see the"
  echo "min-max spread above); CPU time does not."
  echo
  echo "engine: $($zcopy -v cp --progress never "$work/src" "$work/dst2" 2>&1 | grep -o 'engines: .*' || true)"
} | tee bench/results/cp.md
