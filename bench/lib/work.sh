# A benchmark's scratch directory and the processes it starts, removed and stopped when
# the script exits however it exits. Source it, then:
#
#   bench_work NAME [DIR]  makes $work, a fresh DIR/zcopy-NAME.XXXXXX (DIR: $TMPDIR, else
#                          /tmp), then does what bench_trap does.
#   bench_trap             for a script that chose $work itself: makes an empty array
#                          pids, to which the script adds the pid of every server and
#                          client it starts in the background, and sets an EXIT trap
#                          that kills those, runs the script's own function bench_atexit
#                          when it defines one (stopping what pids does not hold,
#                          unmounting), removes the veth namespaces when
#                          bench/lib/veth.sh made them, and removes $work.

bench_work() {
  work=$(mktemp -d "${2:-${TMPDIR:-/tmp}}/zcopy-$1.XXXXXX")
  bench_trap
}

bench_trap() {
  pids=()
  trap bench_cleanup EXIT
}

bench_cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  # What was just killed leaves its sockets, mounts and namespace.
  [ ${#pids[@]} = 0 ] || sleep 0.2
  if declare -F bench_atexit >/dev/null; then bench_atexit || true; fi
  if declare -F veth_down >/dev/null; then veth_down; fi
  [ -z "${work:-}" ] || rm -rf "$work"
}
