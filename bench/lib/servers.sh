# The servers of an A/B benchmark, each named and specified as NAME=BIN[,VAR=VALUE...][,uring]
# (a zcopy build, its environment, --io uring), NAME=nginx or NAME=lwan:PATH (a lwan
# build, patched and set up as bench/io.sh's header says), one worker each, pinned to
# CPU 0, serving $work/www on $addr (inside ${in_srv[@]}, prefixed by ${rt[@]} when set).
# Source it after work.sh, veth.sh and nginx.sh, then:
#   ab_network lo|veth NAME        sets addr (where the servers listen) and in_srv/in_cli
#                                   (the prefixes that run a server or a client): loopback,
#                                   or a veth pair of namespaces named after NAME (198.19/16)
#   server_cpu PID                  a process's CPU-seconds so far (user + system)
#   start_servers BASEPORT SPEC...  fills names (in order), port[NAME] (BASEPORT+1...) and
#                                   pid[NAME] (the process whose CPU to count: nginx's
#                                   worker), adds every process to pids; the caller
#                                   declares port and pid with `declare -A`.
start_servers() {
  local base=$1 i=1 spec n parts envs io x
  shift
  local pre=("${in_srv[@]}")
  [ -n "${rt+x}" ] && pre+=("${rt[@]}")
  names=()
  for spec in "$@"; do
    n=${spec%%=*}
    IFS=, read -ra parts <<< "${spec#*=}"
    envs=()
    io=()
    for x in "${parts[@]:1}"; do
      if [[ $x == uring ]]; then io=(--io uring); else envs+=("$x"); fi
    done
    port[$n]=$((base + i))
    i=$((i + 1))
    names+=("$n")
    if [ "${parts[0]}" = nginx ]; then
      nginx_conf "$work/nginx-$n" "server { listen $addr:${port[$n]}; root $work/www; }"
      "${pre[@]}" taskset -c 0 nginx -p "$work/nginx-$n" -c "$work/nginx-$n/nginx.conf" &
      pids+=($!)
      pid[$n]=$(nginx_worker "$work/nginx-$n")
    elif [[ ${parts[0]} == lwan:* ]]; then
      cat > "$work/lwan-$n.conf" <<EOF
keep_alive_timeout = 15
quiet = true
threads = 1
listener $addr:${port[$n]}
site {
    serve_files / {
        path = $work/www
    }
}
EOF
      (cd "$work" && exec "${pre[@]}" taskset -c 0 "${parts[0]#lwan:}" -c "$work/lwan-$n.conf" \
        > "$work/$n.out" 2>&1) &
      pids+=($!)
      pid[$n]=$!
      sleep 0.5
      # Its workers inherit the job thread's SCHED_IDLE (see bench/io.sh's header).
      for x in /proc/"${pid[$n]}"/task/*; do
        if [ "$(cat "$x/comm")" = "lwan worker" ]; then chrt -o -p 0 "${x##*/}"; fi
      done
    else
      "${pre[@]}" env "${envs[@]}" taskset -c 0 "${parts[0]}" -q serve "$work/www" \
        --listen "$addr:${port[$n]}" --workers 1 "${io[@]}" > "$work/$n.out" 2>&1 &
      pids+=($!)
      pid[$n]=$!
    fi
  done
  sleep 1
}

ab_network() {
  addr=127.0.0.1
  in_srv=()
  in_cli=()
  if [ "$1" = veth ]; then veth_up "$2" 198.19; fi
}

# (utime and stime, fields 14 and 15, counted after the command name, which may hold
# spaces: lwan's main thread is "lwan job")
server_cpu() {
  sed 's/.*) //' "/proc/$1/stat" | awk -v hz="$(getconf CLK_TCK)" '{print ($12+$13)/hz}'
}
