# Sourced by bench/h2.sh and tests/h2attack/against.sh: start the HTTP/2 servers with
# one configuration each, on a shared document root and one certificate.
#
#   h2_setup WORK ADDR [CERT_IPS...]  makes WORK/www (index.html, 1k.bin, 64k.bin),
#                                     WORK/cert.pem + key.pem (P-256, self-signed,
#                                     SAN IP:ADDR and each CERT_IP)
#   h2_start NAME H2C_PORT TLS_PORT   NAME: zcopy | nginx | h2o | caddy; starts it
#                                     under "${H2_PREFIX[@]}" (e.g. ip netns exec NS
#                                     taskset -c 0); sets H2_PID[NAME] (the process to
#                                     measure: nginx's master, whose worker is its child)
#   h2_stop                           kills every server started (by pid)
#
# Configurations (one worker each, access logs off, files from WORK/www):
#   nginx  1.22: `listen ADDR:PORT http2` (h2c prior knowledge) and `listen ADDR:PORT
#          ssl http2`, sendfile on, tcp_nopush on, open_file_cache on, worker_processes 1
#   h2o    num-threads 1, file.dir, a plain and an ssl listener (h2c prior knowledge and
#          h2 by ALPN)
#   caddy  file_server, `protocols h1 h2 h2c`, GOMAXPROCS=1, admin and auto-https off
#   zcopy-uring  the same with `--io uring` (SERVERS="zcopy zcopy-uring": both drivers)
#   zcopy  `zcopy -q serve WORK/www --workers 1 --listen ADDR:H2C_PORT --listen
#          https://ADDR:TLS_PORT --tls-cert --tls-key $ZCOPY_ARGS` (ZCOPY_ARGS: whatever
#          the HTTP/2 branch needs to speak h2c on a plain listener; the same process
#          answers HTTP/1.1 on both listeners); ZCOPY=path of the binary
# Files are created by the caller's user; workers that drop privileges (nginx, h2o as
# root) read them through mode 755/644.

declare -gA H2_PID
H2_PIDS=()
H2_PREFIX=()

h2_setup() {
  local work=$1 addr=$2 san="IP:$2" ip
  shift 2
  for ip in "$@"; do san="$san,IP:$ip"; done
  mkdir -p "$work/www" "$work/logs"
  chmod 755 "$work" "$work/www"
  echo '<!doctype html><title>zcopy h2</title><p>hello' > "$work/www/index.html"
  head -c 1024 /dev/urandom > "$work/www/1k.bin"
  head -c 65536 /dev/urandom > "$work/www/64k.bin"
  chmod 644 "$work/www/"*
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout "$work/key.pem" -out "$work/cert.pem" -subj "/CN=$addr" \
    -addext "subjectAltName=$san" 2>/dev/null
  chmod 644 "$work/key.pem" "$work/cert.pem"
  H2_WORK=$work
  H2_ADDR=$addr
}

# A file of SIZE MiB (sparse-free: real blocks, so the page cache holds real data).
h2_bigfile() { # NAME MIB
  [ -e "$H2_WORK/www/$1" ] || { head -c "$(($2 * 1048576))" /dev/urandom > "$H2_WORK/www/$1"; chmod 644 "$H2_WORK/www/$1"; }
}

h2_start() {
  local name=$1 p1=$2 p2=$3 w=$H2_WORK a=$H2_ADDR
  case $name in
  nginx)
    mkdir -p "$w/nginx"
    cat > "$w/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $w/nginx/nginx.pid;
error_log $w/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  open_file_cache max=1000 inactive=20s;
  keepalive_requests 1000000;
  client_body_temp_path $w/nginx;
  proxy_temp_path $w/nginx;
  fastcgi_temp_path $w/nginx;
  uwsgi_temp_path $w/nginx;
  scgi_temp_path $w/nginx;
  ssl_certificate $w/cert.pem;
  ssl_certificate_key $w/key.pem;
  server {
    listen $a:$p1 http2;
    listen $a:$p2 ssl http2;
    root $w/www;
  }
}
EOF
    "${H2_PREFIX[@]}" nginx -p "$w/nginx" -c "$w/nginx/nginx.conf" > "$w/logs/nginx.out" 2>&1 &
    ;;
  h2o)
    mkdir -p "$w/h2o"
    chmod 777 "$w/h2o"  # h2o drops to nobody before it writes its pid file
    cat > "$w/h2o/h2o.conf" <<EOF
num-threads: 1
pid-file: $w/h2o/h2o.pid
error-log: $w/h2o/error.log
listen:
  host: $a
  port: $p1
listen:
  host: $a
  port: $p2
  ssl:
    certificate-file: $w/cert.pem
    key-file: $w/key.pem
    ocsp-update-interval: 0
hosts:
  default:
    paths:
      /:
        file.dir: $w/www
EOF
    "${H2_PREFIX[@]}" h2o -c "$w/h2o/h2o.conf" > "$w/logs/h2o.out" 2>&1 &
    ;;
  caddy)
    mkdir -p "$w/caddy"
    cat > "$w/caddy/Caddyfile" <<EOF
{
  admin off
  auto_https off
  log {
    output discard
  }
  servers {
    protocols h1 h2 h2c
  }
}
http://$a:$p1 {
  root * $w/www
  file_server
}
https://$a:$p2 {
  tls $w/cert.pem $w/key.pem
  root * $w/www
  file_server
}
EOF
    env GOMAXPROCS=1 HOME="$w/caddy" XDG_DATA_HOME="$w/caddy" XDG_CONFIG_HOME="$w/caddy" \
      "${H2_PREFIX[@]}" caddy run --adapter caddyfile --config "$w/caddy/Caddyfile" > "$w/logs/caddy.out" 2>&1 &
    ;;
  zcopy | zcopy-uring)
    local io=()
    [ "$name" = zcopy-uring ] && io=(--io uring)
    # shellcheck disable=SC2086 # ZCOPY_ARGS is a list of words
    "${H2_PREFIX[@]}" "${ZCOPY:-zcopy}" -q serve "$w/www" --workers 1 --listen "$a:$p1" \
      --listen "https://$a:$p2" --tls-cert "$w/cert.pem" --tls-key "$w/key.pem" ${ZCOPY_ARGS:-} \
      "${io[@]}" > "$w/logs/$name.out" 2>&1 &
    ;;
  *) echo "h2_start: unknown server $name" >&2; return 2 ;;
  esac
  H2_PID[$name]=$!
  H2_PIDS+=($!)
}

# Waits until every started server accepts on its ports (or 10 s); 1 if one did not.
h2_wait() { # PORT...
  local port i
  for port in "$@"; do
    for i in $(seq 100); do
      "${H2_CLIENT_PREFIX[@]}" bash -c "exec 3<>/dev/tcp/$H2_ADDR/$port" 2>/dev/null && break
      sleep 0.1
    done
    [ "$i" -lt 100 ] || { echo "nothing listens on $H2_ADDR:$port" >&2; return 1; }
  done
}

h2_stop() {
  local p
  for p in "${H2_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${H2_PIDS[@]}"; do
    for _ in $(seq 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  H2_PIDS=()
}

# 2 if SERVER answers GET / with HTTP/2 on the h2c port, 1 if not (curl prior knowledge).
h2_speaks() { # PROTO(h2c|h2|h1|h1tls) PORT
  local v
  case $1 in
  h2c) v=$("${H2_CLIENT_PREFIX[@]}" curl -s -m 5 --http2-prior-knowledge -o /dev/null -w '%{http_version}' "http://$H2_ADDR:$2/1k.bin") ;;
  h2) v=$("${H2_CLIENT_PREFIX[@]}" curl -s -m 5 -k --http2 -o /dev/null -w '%{http_version}' "https://$H2_ADDR:$2/1k.bin") ;;
  h1) v=$("${H2_CLIENT_PREFIX[@]}" curl -s -m 5 --http1.1 -o /dev/null -w '%{http_version}' "http://$H2_ADDR:$2/1k.bin") ;;
  h1tls) v=$("${H2_CLIENT_PREFIX[@]}" curl -s -m 5 -k --http1.1 -o /dev/null -w '%{http_version}' "https://$H2_ADDR:$2/1k.bin") ;;
  esac
  case $1 in h2*) [ "$v" = 2 ] ;; *) [ "$v" = 1.1 ] ;; esac
}
