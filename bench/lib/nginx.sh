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

# nginx_worker DIR: the pid of the worker of the nginx started with DIR's conf, once
# it has one (waits up to 10 s: on a loaded machine the pid file comes late).
nginx_worker() {
  local w _
  for _ in $(seq 100); do
    if [ -s "$1/nginx.pid" ]; then
      w=$(pgrep -P "$(cat "$1/nginx.pid")" | head -1) && [ -n "$w" ] && { echo "$w"; return 0; }
    fi
    sleep 0.1
  done
  echo "nginx in $1 has no worker after 10 s" >&2
  return 1
}
