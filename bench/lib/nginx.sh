# The nginx every benchmark compares against: one worker, in the foreground, no
# access log, sendfile and tcp_nopush on, keep-alive without a request limit.
# Source it, then: nginx_conf DIR LINE... writes DIR/nginx.conf (logs and pid in DIR)
# with each LINE added to the http block (the server blocks, and what a benchmark
# turns on: gzip, open_file_cache); start it with
# `nginx -p DIR -c DIR/nginx.conf`, its pid in DIR/nginx.pid.
nginx_conf() {
  local dir=$1 line
  shift
  mkdir -p "$dir/logs"
  {
    cat <<NGINX
worker_processes 1;
daemon off;
error_log $dir/logs/error.log warn;
pid $dir/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  default_type application/octet-stream;
NGINX
    for line in "$@"; do printf '  %s\n' "$line"; done
    printf '}\n'
  } > "$dir/nginx.conf"
}
