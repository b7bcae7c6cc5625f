#!/usr/bin/env bash
# zcopy serve (gzip variant made once, sealed, sent by reference) vs nginx (`gzip on`,
# gzip_types for JS, level as given; 1 worker, access_log off, sendfile on) and, when
# installed, caddy (`encode zstd gzip`, its default level, GOMAXPROCS=1), side by
# side in one run on one compressible 200 KiB JS file, server pinned to CPU 0 and
# wrk to CPU 1, every request with `Accept-Encoding: gzip`: requests/s, requests per
# server CPU-second, and bytes per response body. Bounded in time.
# With --veth (root): servers and wrk in two network namespaces joined by a veth pair
# (a container-like local peer); the namespaces are removed on exit.
# Usage: bench/compress.sh [--veth] [WRK_SECONDS] [NGINX_GZIP_LEVEL]   (defaults 10, 1: nginx's default)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib/veth.sh
source bench/lib/work.sh
mode=loopback
if [ "${1:-}" = --veth ]; then mode=veth; shift; fi
secs=${1:-10}
level=${2:-1}
for t in nginx wrk curl taskset bc; do command -v $t >/dev/null || { echo "needs $t" >&2; exit 1; }; done
cargo build --release -q -p zcopy-cli
zcopy=$PWD/target/release/zcopy
bench_work compress
addr=127.0.0.1
in_srv=()
in_cli=()
if [ $mode = veth ]; then
  veth_up zccomp$$ 198.19
fi
mkdir -p "$work/www" "$work/nginx/logs"
chmod 755 "$work" "$work/www"
# 200 KiB of JavaScript-like text (repetitive identifiers, varying numbers).
python3 - "$work/www/app.js" <<'PY'
import sys, random
random.seed(7)
out = []
i = 0
while sum(map(len, out)) < 200 * 1024:
    out.append(f"export function handler{i}(req, res) {{ const v = {random.randint(0, 99999)}; "
               f"if (req.query.id === '{random.randint(0, 999)}') {{ return res.json({{ ok: true, v }}); }} "
               f"return res.status(404).send('not found: ' + v); }}\n")
    i += 1
open(sys.argv[1], "w").write("".join(out)[:200 * 1024])
PY
port_nginx=18090
port_zcopy=18091
port_caddy=18092
servers=(nginx zcopy)
command -v caddy >/dev/null && servers+=(caddy)
. "$(dirname "$0")/lib/nginx.sh"
nginx_conf "$work/nginx" \
  "types { application/javascript js; }" \
  "gzip on;" "gzip_comp_level $level;" "gzip_types application/javascript;" \
  "server { listen $addr:$port_nginx; root $work/www; }"
"${in_srv[@]}" taskset -c 0 nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" &
pids+=($!)
"${in_srv[@]}" taskset -c 0 "$zcopy" -q serve "$work/www" --listen $addr:$port_zcopy --workers 1 ${ZCOPY_ARGS:-} > "$work/zcopy.out" &
pids+=($!)
if [[ " ${servers[*]} " == *" caddy "* ]]; then
  cat > "$work/Caddyfile" <<CADDY
{
  admin off
  auto_https off
  log {
    output discard
  }
}
http://$addr:$port_caddy {
  root * $work/www
  encode zstd gzip
  file_server
}
CADDY
  "${in_srv[@]}" env GOMAXPROCS=1 HOME="$work" XDG_DATA_HOME="$work" XDG_CONFIG_HOME="$work" \
    taskset -c 0 caddy run --config "$work/Caddyfile" --adapter caddyfile > "$work/caddy.out" 2>&1 &
  pids+=($!)
fi
sleep 1
if [[ " ${servers[*]} " == *" caddy "* ]] && ! kill -0 "${pids[2]}" 2>/dev/null; then
  echo "caddy did not start:" >&2; cat "$work/caddy.out" >&2; exit 1
fi
nginx_worker=$(nginx_worker "$work/nginx")
zcopy_pid=${pids[1]}
cpu() { awk -v hz="$(getconf CLK_TCK)" '{print ($14+$15)/hz}' "/proc/$1/stat"; }
# Let zcopy make its variant (the first request queues it).
for _ in $(seq 50); do
  enc=$("${in_cli[@]}" curl -s -o /dev/null -H 'Accept-Encoding: gzip' -w '%header{content-encoding}' "http://$addr:$port_zcopy/app.js")
  [ "$enc" = gzip ] && break; sleep 0.1
done
declare -A R
for name in "${servers[@]}"; do
  port=$port_nginx pid=$nginx_worker
  [ $name = zcopy ] && port=$port_zcopy pid=$zcopy_pid
  [ $name = caddy ] && port=$port_caddy pid=${pids[2]}
  R[$name.bytes]=$("${in_cli[@]}" curl -s -H 'Accept-Encoding: gzip' -o /dev/null -w '%{size_download} %header{content-encoding}' "http://$addr:$port/app.js")
  c0=$(cpu "$pid")
  out=$("${in_cli[@]}" taskset -c 1 wrk -t1 -c50 -d"${secs}s" --timeout 5s -H 'Accept-Encoding: gzip' "http://$addr:$port/app.js")
  c1=$(cpu "$pid")
  R[$name.rps]=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  R[$name.cpu]=$(echo "$c1 - $c0" | bc -l)
  R[$name.rpcpu]=$(echo "${R[$name.rps]} * $secs / (${R[$name.cpu]})" | bc -l)
  R[$name.err]=$(echo "$out" | awk '/Non-2xx|Socket errors/' | tr '\n' ' ')
done
printf '%-6s %12s %10s %16s %s\n' server 'req/s' 'CPU-s' 'req/CPU-s' 'body bytes, encoding'
for name in "${servers[@]}"; do
  printf '%-6s %12.0f %10.2f %16.0f %s %s\n' $name "${R[$name.rps]}" "${R[$name.cpu]}" "${R[$name.rpcpu]}" "${R[$name.bytes]}" "${R[$name.err]}"
done
printf '%s: zcopy/nginx: %.2fx req/s, %.2fx req per server CPU-s (nginx gzip_comp_level %s)\n' $mode \
  "$(echo "${R[zcopy.rps]} / ${R[nginx.rps]}" | bc -l)" "$(echo "${R[zcopy.rpcpu]} / ${R[nginx.rpcpu]}" | bc -l)" "$level"
if [ -n "${R[caddy.rps]:-}" ]; then
  printf '%s: zcopy/caddy: %.2fx req/s, %.2fx req per server CPU-s\n' $mode \
    "$(echo "${R[zcopy.rps]} / ${R[caddy.rps]}" | bc -l)" "$(echo "${R[zcopy.rpcpu]} / ${R[caddy.rpcpu]}" | bc -l)"
fi
