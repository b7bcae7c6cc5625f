#!/usr/bin/env bash
# Starts one HTTP/2 server the way bench/h2.sh does (bench/h2-servers.sh: one worker,
# a 64 MiB /big.bin, a self-signed certificate), then runs every attack of run.py
# against its h2c port and its TLS port (ALPN h2, verified against that certificate)
# with --pid, and httpwg-cli against the h2c port when it is installed; stops it.
#   SERVER: zcopy (ZCOPY=binary, default target/release/zcopy; ZCOPY_ARGS as in
#           bench/h2.sh), nginx, h2o, caddy
# Usage: tests/h2attack/against.sh SERVER [h2c|tls|both] [run.py args...]
# Writes the results as JSON lines to $RESULTS (default /tmp/h2attack-SERVER.jsonl).
set -euo pipefail
cd "$(dirname "$0")/../.."
name=${1:?usage: against.sh zcopy|nginx|h2o|caddy [h2c|tls|both] [run.py args]}
which=${2:-both}
shift $(( $# >= 2 ? 2 : 1 ))
export ZCOPY=${ZCOPY:-$PWD/target/release/zcopy}
source bench/h2-servers.sh
H2_CLIENT_PREFIX=()
work=$(mktemp -d "${TMPDIR:-/tmp}/h2attack.XXXXXX")
trap 'h2_stop; rm -rf "$work"' EXIT
h2_setup "$work" 127.0.0.1
h2_bigfile big.bin 64
p1=$((20000 + $$ % 10000 * 2)); p2=$((p1 + 1))
h2_start "$name" "$p1" "$p2"
h2_wait "$p1" "$p2"
pid=${H2_PID[$name]}
results=${RESULTS:-/tmp/h2attack-$name.jsonl}
rm -f "$results"
rc=0
if [ "$which" != tls ]; then
  if h2_speaks h2c "$p1"; then
    echo "== $name h2c 127.0.0.1:$p1 (pid $pid)"
    python3 tests/h2attack/run.py --port "$p1" --pid "$pid" --label "$name h2c" --json "$results" "$@" || rc=1
    if command -v httpwg >/dev/null; then tests/h2attack/httpwg.sh "127.0.0.1:$p1" || rc=1; fi
  else
    echo "== $name h2c: n/a (no HTTP/2 with prior knowledge on 127.0.0.1:$p1)"; rc=1
  fi
fi
if [ "$which" != h2c ]; then
  if h2_speaks h2 "$p2"; then
    echo "== $name h2 over TLS 127.0.0.1:$p2 (pid $pid)"
    python3 tests/h2attack/run.py --port "$p2" --tls --ca "$work/cert.pem" --pid "$pid" --label "$name tls" \
      --json "$results" "$@" || rc=1
  else
    echo "== $name h2 over TLS: n/a (ALPN did not select h2 on 127.0.0.1:$p2)"; rc=1
  fi
fi
exit $rc
