#!/usr/bin/env bash
# HTTP/2 side by side in one run: zcopy, nginx (1.22: `listen … http2`, 1 worker,
# sendfile on), h2o (1 thread) and caddy (GOMAXPROCS=1) when installed, all serving one
# directory with one self-signed certificate (bench/h2-servers.sh has the configs).
# Every server is pinned to CPU 0, the client to CPU 1. Rounds alternate between the
# servers so drift on a shared machine hits all.
#   h2load -c 50 -m 10 -t 1 for 1k.bin and 64k.bin, h2c (prior knowledge) and h2 over
#     TLS (ALPN): requests/s and requests per server CPU-second (utime+stime of every
#     thread of the server and its children, from /proc)
#   a 1 GiB download (curl --http2-prior-knowledge / --http2): MB/s and server
#     CPU-seconds per GB
#   zcopy over HTTP/1.1 (h2load --h1 -c 50 -m 1, no pipelining; curl --http1.1) on the
#     same listeners, for "our HTTP/2 costs ≤ 1.2× our HTTP/1.1 per 1 KiB request"
# A server/protocol that does not answer (curl says so first) gets "n/a" in its row:
# zcopy's HTTP/2 columns until it speaks h2. The zcopy process is
#   zcopy -q serve DIR --workers 1 --listen ADDR:H2C --listen https://ADDR:TLS
#         --tls-cert C --tls-key K $ZCOPY_ARGS
# ZCOPY_ARGS: whatever makes the plain listener speak h2c with prior knowledge (and
# ALPN h2 on TLS) once HTTP/2 lands. ZCOPY: the binary (default: cargo build --release,
# target/release/zcopy). SERVERS: the servers to run (default "zcopy nginx h2o caddy",
# the ones installed; "zcopy-uring" adds zcopy under --io uring beside it). BIG_MIB: size of the big file (default 1024; 0 skips it).
# With --veth (root): servers and clients in two network namespaces joined by a veth
# pair (198.18.0.0/15 addresses, unique names), removed on exit.
# Every client run is bounded (timeout). Writes bench/results/h2[-veth].md.
# Usage: bench/h2.sh [--veth] [SECONDS] [ROUNDS]   (defaults 5, 3)
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
  command -v "$t" >/dev/null || { echo "bench/h2.sh needs $t" >&2; exit 2; }
done
if [ -z "${ZCOPY:-}" ]; then
  cargo build --release -q -p zcopy-cli
  ZCOPY=$PWD/target/release/zcopy
fi
export ZCOPY
source bench/h2-servers.sh
bench_atexit() {
  h2_stop
}
bench_work h2
addr=127.0.0.1
H2_CLIENT_PREFIX=()
H2_PREFIX=(taskset -c 0)
if [ $mode = veth ]; then
  veth_up zch2$$ 198.19
  H2_PREFIX=("${in_srv[@]}" taskset -c 0)
  H2_CLIENT_PREFIX=("${in_cli[@]}")
fi
cli=("${H2_CLIENT_PREFIX[@]}" taskset -c 1)

h2_setup "$work" "$addr" 127.0.0.1
[ "$big_mib" -gt 0 ] && { h2_bigfile big.bin "$big_mib"; cat "$work/www/big.bin" > /dev/null; }

servers=()
declare -A port_h2c port_tls
i=0
for s in ${SERVERS:-zcopy nginx h2o caddy}; do
  case $s in
  zcopy | zcopy-uring) [ -x "$ZCOPY" ] || { echo "no zcopy binary at $ZCOPY" >&2; continue; } ;;
  *) command -v "$s" >/dev/null || { echo "skipped: $s is not installed" >&2; continue; } ;;
  esac
  port_h2c[$s]=$((18500 + 2 * i))
  port_tls[$s]=$((18501 + 2 * i))
  i=$((i + 1))
  h2_start "$s" "${port_h2c[$s]}" "${port_tls[$s]}"
  servers+=("$s")
done
for s in "${servers[@]}"; do h2_wait "${port_h2c[$s]}" "${port_tls[$s]}"; done

# The rows: server/protocol pairs that answer; the others are n/a.
rows=()
declare -A rowport rowurl na
for s in "${servers[@]}"; do
  protos="h2c h2"
  case $s in zcopy*) protos="h2c h2 h1 h1tls" ;; esac
  for p in $protos; do
    r=$s/$p
    case $p in
    h2c | h1) rowport[$r]=${port_h2c[$s]}; rowurl[$r]=http://$addr:${port_h2c[$s]} ;;
    *) rowport[$r]=${port_tls[$s]}; rowurl[$r]=https://$addr:${port_tls[$s]} ;;
    esac
    rows+=("$r")
    if ! h2_speaks "$p" "${rowport[$r]}"; then
      na[$r]=1
      echo "n/a: $s does not answer $p on $addr:${rowport[$r]}" >&2
    fi
  done
done

hz=$(getconf CLK_TCK)
# CPU seconds of a process, its threads and its children (nginx's worker).
cpu() {
  local p t=0
  for p in "$1" $(pgrep -P "$1" || true); do
    t=$((t + $(cat /proc/"$p"/task/*/stat 2>/dev/null | sed 's/.*) //' | awk '{s+=$12+$13} END{print s+0}')))
  done
  echo "$t / $hz" | bc -l
}
declare -A reqs cpus wall bad
load() { # ROW FILE
  local r=$1 f=$2 s=${1%/*} p=${1#*/} c0 c1 out ok xx n t opts=(-c 50 -m 10)
  case $p in h1 | h1tls) opts=(--h1 -c 50 -m 1) ;; esac
  c0=$(cpu "${H2_PID[$s]}")
  out=$(timeout $((secs + 30)) "${cli[@]}" h2load "${opts[@]}" -t 1 -D "$secs" "${rowurl[$r]}/$f" 2>&1) || true
  c1=$(cpu "${H2_PID[$s]}")
  n=$(echo "$out" | awk '/^requests:/ {print $8}')
  ok=$(echo "$out" | awk '/^requests:/ {print $10 + $12 + $14}')
  xx=$(echo "$out" | awk '/^status codes:/ {print $5 + $7 + $9}')  # 3xx 4xx 5xx
  t=$(echo "$out" | awk '/^finished in/ {sub("s,", "", $3); print $3}')
  # Every request done is counted (-D: those still in flight at the end are not);
  # none may fail, error, time out or be answered with a non-2xx status.
  if [ -z "$n" ] || [ "$n" = 0 ] || [ "$ok" != 0 ] || [ "$xx" != 0 ]; then
    bad[$r.$f]="h2load: $(echo "$out" | grep -E '^(requests|status codes):' | tr '\n' ' ' | tr -s ' ')"
    [ -n "$n" ] || bad[$r.$f]="h2load: $(echo "$out" | tail -1)"
    echo "warning: $r $f: ${bad[$r.$f]}" >&2
    return
  fi
  reqs[$r.$f]=$(( ${reqs[$r.$f]:-0} + n ))
  cpus[$r.$f]=$(echo "${cpus[$r.$f]:-0} + $c1 - $c0" | bc -l)
  wall[$r.$f]=$(echo "${wall[$r.$f]:-0} + $t" | bc -l)
}
download() { # ROW
  local r=$1 s=${1%/*} p=${1#*/} c0 c1 out opts
  case $p in
  h2c) opts=(--http2-prior-knowledge) ;;
  h2) opts=(-k --http2) ;;
  h1) opts=(--http1.1) ;;
  h1tls) opts=(-k --http1.1) ;;
  esac
  c0=$(cpu "${H2_PID[$s]}")
  out=$("${cli[@]}" curl -s "${opts[@]}" --max-time 300 -o /dev/null \
    -w '%{http_code} %{http_version} %{size_download} %{time_total}' "${rowurl[$r]}/big.bin") || true
  c1=$(cpu "${H2_PID[$s]}")
  set -- $out
  if [ "${1:-}" != 200 ] || [ "${3:-0}" != $((big_mib * 1048576)) ]; then
    bad[$r.big]="curl: $out"
    echo "warning: $r big.bin: $out" >&2
    return
  fi
  reqs[$r.big]=$(( ${reqs[$r.big]:-0} + $3 ))
  cpus[$r.big]=$(echo "${cpus[$r.big]:-0} + $c1 - $c0" | bc -l)
  wall[$r.big]=$(echo "${wall[$r.big]:-0} + $4" | bc -l)
}
for round in $(seq "$rounds"); do
  for f in 1k.bin 64k.bin; do
    for r in "${rows[@]}"; do
      [ -n "${na[$r]:-}" ] || load "$r" "$f"
    done
  done
  if [ "$big_mib" -gt 0 ]; then
    for r in "${rows[@]}"; do
      [ -n "${na[$r]:-}" ] || download "$r"
    done
  fi
  echo "round $round of $rounds done" >&2
done

# Figures: req/s, req per CPU-s; for big: MB/s, CPU-s per GB.
fig() { # ROW FILE -> "rps perCPU" or empty
  local k=$1.$2
  [ -n "${reqs[$k]:-}" ] || return 0
  if [ "$2" = big ]; then
    echo "${reqs[$k]} / 1000000 / ${wall[$k]}" | bc -l | xargs printf '%.0f '
    echo "${cpus[$k]} / (${reqs[$k]} / 1000000000)" | bc -l | xargs printf '%.3f\n'
  else
    echo "${reqs[$k]} / ${wall[$k]}" | bc -l | xargs printf '%.0f '
    echo "${reqs[$k]} / ${cpus[$k]}" | bc -l | xargs printf '%.0f\n'
  fi
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "n/a"; else printf "%.2fx", a / b }'; }
suffix= flag=
[ $mode = veth ] && suffix=-veth flag=' --veth'
out=bench/results/h2$suffix.md
mkdir -p bench/results
{
echo "# HTTP/2 servers side by side, $mode, $(uname -r), $(nproc) cores"
echo
echo "Each server 1 worker/thread on CPU 0, the client on CPU 1; \`bench/h2.sh$flag $secs $rounds\`"
echo "($rounds alternating rounds of ${secs}s per server, protocol and file). h2load -c 50 -m 10 -t 1"
echo "(HTTP/1.1 rows: --h1 -c 50 -m 1); ${big_mib} MiB download: curl, one per round. zcopy: ZCOPY_ARGS='${ZCOPY_ARGS:-}'."
echo
echo "| file | server | protocol | req/s | req per server CPU-s | vs nginx (same protocol) |"
echo "|---|---|---|---|---|---|"
for f in 1k.bin 64k.bin; do
  for r in "${rows[@]}"; do
    s=${r%/*} p=${r#*/}
    if [ -n "${na[$r]:-}" ]; then echo "| $f | $s | $p | n/a | n/a | |"; continue; fi
    if [ -n "${bad[$r.$f]:-}" ]; then echo "| $f | $s | $p | not comparable: ${bad[$r.$f]} | | |"; continue; fi
    read -r rps per <<< "$(fig "$r" "$f")"
    base=$(fig "nginx/$p" "$f" | awk '{print $2}')
    echo "| $f | $s | $p | $rps | $per | $(ratio "$per" "$base") |"
  done
done
if [ "$big_mib" -gt 0 ]; then
  echo
  echo "| ${big_mib} MiB download | server | protocol | MB/s | server CPU-s per GB | vs nginx (same protocol) |"
  echo "|---|---|---|---|---|---|"
  for r in "${rows[@]}"; do
    s=${r%/*} p=${r#*/}
    if [ -n "${na[$r]:-}" ]; then echo "| big.bin | $s | $p | n/a | n/a | |"; continue; fi
    if [ -n "${bad[$r.big]:-}" ]; then echo "| big.bin | $s | $p | not comparable: ${bad[$r.big]} | | |"; continue; fi
    read -r mbs cpg <<< "$(fig "$r" big)"
    base=$(fig "nginx/$p" big | awk '{print $2}')
    echo "| big.bin | $s | $p | $mbs | $cpg | $(ratio "$cpg" "$base") |"
  done
fi
echo
echo "Targets (issue 21):"
z() { fig "zcopy/$1" "$2" | awk -v c="${3:-2}" '{print $c}'; }
for p in h2c h2; do
  echo "- $p 1 KiB req per CPU-s, zcopy / nginx (≥ 1.30x): $(ratio "$(z $p 1k.bin)" "$(fig nginx/$p 1k.bin | awk '{print $2}')")," \
    "zcopy / h2o (≥ 1.00x): $(ratio "$(z $p 1k.bin)" "$(fig h2o/$p 1k.bin | awk '{print $2}')")"
  [ "$big_mib" -gt 0 ] && echo "- $p ${big_mib} MiB download CPU-s per GB, zcopy / nginx (≤ 1.00x): $(ratio "$(z $p big)" "$(fig nginx/$p big | awk '{print $2}')")"
done
echo "- cost per 1 KiB request, zcopy HTTP/2 / HTTP/1.1 (≤ 1.20x): h2c/h1 $(ratio "$(z h1 1k.bin)" "$(z h2c 1k.bin)")," \
  "h2/h1 over TLS $(ratio "$(z h1tls 1k.bin)" "$(z h2 1k.bin)")"
} | tee "$out"
