#!/usr/bin/env bash
# HTTPS: zcopy serve vs nginx, one worker each, the same certificate (ECDSA P-256)
# and cipher (TLS 1.3, TLS_AES_128_GCM_SHA256, forced on the clients through
# OPENSSL_CONF and on nginx by ssl_conf_command), over loopback, servers pinned to
# CPU 0 and clients to CPU 1. Figures: keep-alive req/s for 1 KiB and 64 KiB files
# (wrk -t1 -c50 -d5s), and a 1 GiB GET with curl: GB/s and server CPU seconds per GB
# (utime + stime from /proc/PID/stat). Median of 3 alternating rounds. Bounded
# (about 2 minutes), cleans up after
# itself, writes bench/results/tls.md. Usage: [ZCOPY_ARGS="--ktls off"] [ROUNDS=3]
# bench/tls.sh [DURATION_SECS]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib/work.sh
dur=${1:-5}
need=()
for t in nginx wrk curl openssl taskset; do command -v "$t" >/dev/null || need+=("$t"); done
if [ ${#need[@]} -gt 0 ]; then
  pkgs=$(printf '%s\n' "${need[@]}" | sed 's/^taskset$/util-linux/' | sort -u)
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs >/dev/null
fi
cargo build --release -q -p zcopy-cli
zcopy=$PWD/target/release/zcopy
bench_atexit() {
  wait 2>/dev/null
}
bench_work tls-bench

# Certificate and files.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -keyout "$work/key.pem" -out "$work/cert.pem" -subj /CN=localhost \
  -addext "subjectAltName=IP:127.0.0.1" 2>/dev/null
mkdir "$work/www"
head -c 1024 /dev/urandom > "$work/www/1k"
head -c 65536 /dev/urandom > "$work/www/64k"
head -c 1G /dev/urandom > "$work/www/1g"
cat "$work/www/1g" > /dev/null   # warm the page cache

# Clients speak only TLS 1.3 with AES-128-GCM.
cat > "$work/openssl.cnf" <<EOF
openssl_conf = conf
[conf]
ssl_conf = ssl
[ssl]
system_default = sys
[sys]
MinProtocol = TLSv1.3
Ciphersuites = TLS_AES_128_GCM_SHA256
EOF
export OPENSSL_CONF=$work/openssl.cnf

port_free() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
nginx_port=$(port_free)
zcopy_port=$(port_free)
mkdir -p "$work/nginx/logs"
cat > "$work/nginx/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  keepalive_requests 1000000;
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:$nginx_port ssl;
    ssl_certificate $work/cert.pem;
    ssl_certificate_key $work/key.pem;
    ssl_protocols TLSv1.3;
    ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256;
    root $work/www;
  }
}
EOF
taskset -c 0 nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" &
pids+=($!); nginx_pid=$!
taskset -c 0 "$zcopy" serve "$work/www" --workers 1 --listen "https://127.0.0.1:$zcopy_port" \
  --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" ${ZCOPY_ARGS:-} > "$work/zcopy.out" 2>&1 &
pids+=($!); zcopy_pid=$!
for port in $nginx_port $zcopy_port; do
  for _ in $(seq 50); do curl -s --cacert "$work/cert.pem" -o /dev/null "https://127.0.0.1:$port/1k" && break; sleep 0.1; done
done
head -1 "$work/zcopy.out"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
cipher() { curl -sv --cacert "$work/cert.pem" -o /dev/null "https://127.0.0.1:$1/1k" 2>&1 | grep -o 'SSL connection using [^ ]* / [A-Z0-9_]*' | sed 's/SSL connection using //'; }

# Three rounds, the servers alternating within each (the VM is shared: the median of
# three side-by-side runs, not one run, is reported).
rounds=${ROUNDS:-3}
declare -A all
for server in nginx zcopy; do echo "== $server: $(cipher "$(eval echo \$${server}_port)")"; done
for round in $(seq "$rounds"); do
  for server in nginx zcopy; do
    port_var=${server}_port; port=${!port_var}
    pid_var=${server}_pid; pid=${!pid_var}
    line="round $round $server:"
    for f in 1k 64k; do
      t0=$(cpu_ticks "$pid")
      w=$(taskset -c 1 wrk -t1 -c50 -d"${dur}s" "https://127.0.0.1:$port/$f")
      t1=$(cpu_ticks "$pid")
      r=$(awk '/Requests\/sec/ {print $2}' <<<"$w")
      n=$(awk '/requests in/ {print $1}' <<<"$w")
      us=$(echo "($t1 - $t0) / $hz * 1000000 / $n" | bc -l | xargs printf '%.1f')
      all[$server,$f]+="$r "
      all[$server,${f}cpu]+="$us "
      line+=" $f $r req/s ($us server CPU-us/req),"
    done
    before=$(cpu_ticks "$pid")
    out=$(taskset -c 1 curl -sS --cacert "$work/cert.pem" -o /dev/null -w '%{size_download} %{time_total}' "https://127.0.0.1:$port/1g")
    after=$(cpu_ticks "$pid")
    read -r bytes secs <<<"$out"
    [ "$bytes" = $((1 << 30)) ] || { echo "$server: 1 GiB GET returned $bytes bytes" >&2; exit 1; }
    g=$(echo "$bytes / $secs / 1000000000" | bc -l | xargs printf '%.2f')
    c=$(echo "($after - $before) / $hz / ($bytes / 1000000000)" | bc -l | xargs printf '%.2f')
    all[$server,gbps]+="$g "
    all[$server,cpu]+="$c "
    echo "$line 1 GiB $g GB/s, $c CPU-s/GB" | tee -a "$work/rounds"
  done
done
med() { printf '%s\n' $1 | sort -g | awk '{a[NR]=$1} END {printf "%.2f", a[int((NR+1)/2)]}'; }
declare -A rps gbps cpu_per_gb
for server in nginx zcopy; do
  rps[$server,1k]=$(med "${all[$server,1k]}")
  rps[$server,64k]=$(med "${all[$server,64k]}")
  rps[$server,1kcpu]=$(med "${all[$server,1kcpu]}")
  rps[$server,64kcpu]=$(med "${all[$server,64kcpu]}")
  gbps[$server]=$(med "${all[$server,gbps]}")
  cpu_per_gb[$server]=$(med "${all[$server,cpu]}")
done

ratio() { echo "$1 / $2" | bc -l | xargs printf '%.2f'; }
mkdir -p bench/results
{
  echo "# HTTPS: zcopy serve vs nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), 1 worker each ($(uname -r), $(nproc) cores)"
  echo
  echo "TLS 1.3, TLS_AES_128_GCM_SHA256, ECDSA P-256; loopback; server on CPU 0, client on CPU 1;"
  echo "zcopy's TLS path (start-up line): $(grep -o 'userspace TLS.*\|kTLS)' "$work/zcopy.out" | head -1 | sed 's/)$//')."
  echo
  echo "| figure | nginx | zcopy | zcopy / nginx |"
  echo "|---|---|---|---|"
  echo "| 1 KiB keep-alive req/s (wrk -c50 -d${dur}s) | ${rps[nginx,1k]} | ${rps[zcopy,1k]} | $(ratio "${rps[zcopy,1k]}" "${rps[nginx,1k]}")x |"
  echo "| 1 KiB: server CPU-us per request (lower is better) | ${rps[nginx,1kcpu]} | ${rps[zcopy,1kcpu]} | $(ratio "${rps[zcopy,1kcpu]}" "${rps[nginx,1kcpu]}")x |"
  echo "| 64 KiB keep-alive req/s | ${rps[nginx,64k]} | ${rps[zcopy,64k]} | $(ratio "${rps[zcopy,64k]}" "${rps[nginx,64k]}")x |"
  echo "| 64 KiB: server CPU-us per request (lower is better) | ${rps[nginx,64kcpu]} | ${rps[zcopy,64kcpu]} | $(ratio "${rps[zcopy,64kcpu]}" "${rps[nginx,64kcpu]}")x |"
  echo "| 1 GiB GET (curl), GB/s | ${gbps[nginx]} | ${gbps[zcopy]} | $(ratio "${gbps[zcopy]}" "${gbps[nginx]}")x |"
  echo "| 1 GiB GET, server CPU-s/GB (lower is better) | ${cpu_per_gb[nginx]} | ${cpu_per_gb[zcopy]} | $(ratio "${cpu_per_gb[zcopy]}" "${cpu_per_gb[nginx]}")x |"
  echo
  echo "Median of $rounds rounds, servers alternating, on a shared 2-core VM (1-min load average $(awk '{print $1}' /proc/loadavg) at the end)."
  echo
  echo '```'
  cat "$work/rounds"
  echo '```'
  echo
  echo "Command: \`bench/tls.sh $dur\` (ROUNDS=$rounds${ZCOPY_ARGS:+, ZCOPY_ARGS=\"$ZCOPY_ARGS\"})."
  echo
  echo "What kTLS would change: where the kernel has the tls ULP (CONFIG_TLS, \`modprobe tls\`;"
  echo "\`zcopy engines\` says so), zcopy hands each session to the kernel after the handshake"
  echo "and bodies leave by sendfile/splice as on plain HTTP: no pread copy into user space and"
  echo "no userspace encryption, so server CPU-s/GB should fall toward the plain-HTTP figure plus"
  echo "the kernel's AES-GCM cost, and the 64 KiB and 1 GiB figures should rise. To measure it"
  echo "there, run this script twice: as is (the line above says kTLS) and with"
  echo "\`ZCOPY_ARGS=\"--ktls off\"\`; for nginx to compare like with like, add"
  echo "\`ssl_conf_command Options KTLS;\` (OpenSSL 3 built with kTLS) so it uses SSL_sendfile."
} | tee bench/results/tls.md
