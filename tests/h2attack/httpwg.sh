#!/usr/bin/env bash
# HTTP/2 conformance of a running h2c server with httpwg-cli (the h2spec successor,
# `cargo install --locked httpwg-cli`): runs every case (or those matching FILTER)
# against HOST:PORT (HTTP/2 with prior knowledge, plain TCP), bounded in time, and
# prints the pass/fail counts and each failing case's name. The full log goes to
# $HTTPWG_LOG (default: a temporary file, path printed).
# Usage: tests/h2attack/httpwg.sh HOST:PORT [FILTER]     exit 0 when every case passed
set -euo pipefail
addr=${1:?usage: httpwg.sh HOST:PORT [FILTER]}
filter=${2:-}
command -v httpwg >/dev/null || { echo "needs httpwg (cargo install --locked httpwg-cli)" >&2; exit 2; }
log=${HTTPWG_LOG:-$(mktemp "${TMPDIR:-/tmp}/httpwg.XXXXXX")}
args=(-a "$addr" --connect-timeout 2000 --frame-timeout 2000)
[ -n "$filter" ] && args+=(-f "$filter")
set +e
# httpwg's io_uring buffer pool: 4096 buffers (16 MiB) are plenty for one server.
BUFFET_NUM_BUFS=4096 timeout 300 httpwg "${args[@]}" 2>&1 | sed 's/\x1b\[[0-9;]*m//g' > "$log"
rc=${PIPESTATUS[0]}
set -e
passed=$(grep -c '^✅ Test passed' "$log" || true)
failed=$(grep -c '^❌ Test failed' "$log" || true)
total=$(sed -n 's/.*Passed [0-9]*\/\([0-9]*\) tests.*/\1/p' "$log" | tail -1)
[ "$rc" = 124 ] && echo "httpwg timed out after 300 s" >&2
crashed=$(( ${total:-0} - passed - failed ))
echo "httpwg against $addr: $passed passed, $failed failed, $crashed crashed inside httpwg (a panic in the test), of ${total:-?} cases (log: $log)"
# Each failure with the error httpwg reports right after it (its report's frame 0).
awk 'function out() { if (name != "") print "  FAIL " name (why != "" ? "\n       (" why ")" : ""); name = ""; why = "" }
     /^(❌|✅) Test / { out() }
     /^❌ Test failed: / { name = $0; sub(/^❌ Test failed: /, "", name) }
     /^ *0: / && name != "" && why == "" { why = $0; sub(/^ *0: /, "", why) }
     END { out() }' "$log"
[ "$failed" = 0 ] && [ "$passed" = "${total:-x}" ]
