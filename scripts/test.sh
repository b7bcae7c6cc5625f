#!/usr/bin/env bash
# Runs every test: the whole workspace once, then the engine and server suites again
# with each engine forced to report "unsupported" (ZCOPY_DISABLE), so every fallback
# is exercised, not hoped for. Installs the few Debian packages the tests talk to.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for tool in curl wget strace gzip chromium openssl; do command -v "$tool" >/dev/null || need+=("$tool"); done
# The listing page's upload runs in a real browser: chromium driven by chromedriver.
command -v chromedriver >/dev/null || need+=(chromium-driver)
# `ip` (network namespaces joined by a veth pair: crates/zcopy-netns) comes in iproute2.
command -v ip >/dev/null || need+=(iproute2)
command -v prlimit >/dev/null || need+=(util-linux)
# `chattr +i` (the immutable attribute lends a file like an `immutable` rule) comes in e2fsprogs.
command -v chattr >/dev/null || need+=(e2fsprogs)
command -v python3 >/dev/null || need+=(python3)
# `mkfs.erofs` (a read-only file system image, mounted from a file) comes in erofs-utils.
command -v mkfs.erofs >/dev/null || need+=(erofs-utils)
# WebDAV: litmus (the conformance suite, well under a second) and rclone (a real
# client syncing a tree up and back, a few seconds), cadaver (a scripted session).
for tool in litmus rclone cadaver; do command -v "$tool" >/dev/null || need+=("$tool"); done
# `h2load` (many HTTP/2 streams per connection: the server suite's h2 tests) comes in nghttp2-client.
command -v h2load >/dev/null || need+=(nghttp2-client)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "note: ${need[*]} not installed; the tests that use them will say skipped" >&2
  fi
fi
# selenium drives the browser test: from PyPI for this python3, else Debian's
# python3-selenium for the system python; without either that test says skipped.
browser_py=python3
if ! python3 -c 'import selenium' 2>/dev/null; then
  python3 -m pip install -q --break-system-packages selenium >/dev/null 2>&1 || true
fi
if ! python3 -c 'import selenium' 2>/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-selenium >/dev/null 2>&1 || true
  /usr/bin/python3 -c 'import selenium' 2>/dev/null && browser_py=/usr/bin/python3
fi

cargo test --workspace --all-targets
# --all-targets leaves out doc tests: the library's quick start and examples in its docs.
cargo test --workspace --doc

# The listing page's upload in headless chromium (exit 77: skipped, and says why).
echo "== browser: upload from the listing page"
cargo build -q -p zcopy-cli
rc=0; "$browser_py" tests/browser/upload.py target/debug/zcopy || rc=$?
if [ "$rc" != 0 ] && [ "$rc" != 77 ]; then exit "$rc"; fi

# The known HTTP/2 attacks, scripted with the PyPI h2 package (tests/h2attack), against
# the real server: each must leave a good client answered promptly and memory bounded.
echo "== HTTP/2 attacks (tests/h2attack) against zcopy serve"
h2_py=python3
if ! python3 -c 'import h2' 2>/dev/null; then
  python3 -m pip install -q --break-system-packages h2 >/dev/null 2>&1 || true
fi
if ! python3 -c 'import h2' 2>/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-h2 >/dev/null 2>&1 || true
  /usr/bin/python3 -c 'import h2' 2>/dev/null && h2_py=/usr/bin/python3
fi
if "$h2_py" -c 'import h2' 2>/dev/null; then
  # Once on each driver (the io_uring one drives the same HTTP/2 glue by completions).
  for io in epoll uring; do
  echo "-- on --io $io"
  h2dir=$(mktemp -d "${TMPDIR:-/tmp}/zcopy-h2attack.XXXXXX")
  mkdir "$h2dir/www"
  printf 'hello\n' > "$h2dir/www/index.html"
  truncate -s 64M "$h2dir/www/big.bin"
  target/debug/zcopy -q serve "$h2dir/www" --listen 127.0.0.1:0 --workers 1 --io "$io" > "$h2dir/out" 2>&1 &
  h2pid=$!
  for _ in $(seq 100); do grep -q '^http://' "$h2dir/out" && break; sleep 0.1; done
  h2port=$(sed -n 's|^http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$h2dir/out" | head -1)
  rc=0; timeout 300 "$h2_py" tests/h2attack/run.py --host 127.0.0.1 --port "$h2port" --pid "$h2pid" || rc=$?
  kill "$h2pid" 2>/dev/null || true
  rm -rf "$h2dir"
  [ "$rc" = 0 ] || exit "$rc"
  done
elif [ "${CI:-}" = true ]; then
  echo "CI=true but the PyPI h2 package could not be installed" >&2; exit 1
else
  echo "skipped: the PyPI h2 package is not installed (pip install h2)"
fi

# The library's examples check their own output byte for byte.
for ex in copy_file serve_file recv_splice tee_fanout; do
  echo "== example $ex"
  cargo run -q -p zcopy --example "$ex"
done
echo "== example zcopy-tokio send_file"
cargo run -q -p zcopy-tokio --example send_file
# A program outside the workspace, written from the crate's README and docs only.
echo "== tests/outside"
cargo run -q --manifest-path tests/outside/Cargo.toml --target-dir target/outside

# The passes below run the test binaries the first pass built, from their package's
# directory as cargo does: `cargo test -p X` resolves features for X alone and
# rebuilt the crates under it first (~35 s a CI run). These binaries have the
# workspace's features (the engine suite with the library's `server` feature, so its
# io_uring send operation runs in every pass).
artifacts=$(cargo test --workspace --all-targets --no-run --message-format=json 2>/dev/null)
test_bin() { # test target name -> its executable from the first pass
  printf '%s\n' "$artifacts" |
    python3 -c 'import json, sys
for m in map(json.loads, sys.stdin):
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == sys.argv[1] and m["profile"]["test"]:
        print(m["executable"])' "$1"
}
engines_bin=$(test_bin engines)
server_bin=$(test_bin server)
[ -n "$engines_bin" ] || { echo "the engine suite's test binary was not found" >&2; exit 1; }
engines() { (cd crates/zcopy && "$engines_bin" -q "$@"); }
server() { (cd crates/zcopy-http && "$server_bin" -q "$@"); }

engines="sendfile splice mmap copy-range direct vmsplice tee msg-zerocopy uring"
for e in $engines; do
  echo "== engine suite with $e forced off"
  ZCOPY_DISABLE="$e" engines
  echo "== engine suite with $e failing after 64 KiB"
  ZCOPY_DISABLE="$e@65536" engines
done
if [ -d crates/zcopy-http/tests/server ]; then
  [ -n "$server_bin" ] || { echo "the server suite's test binary was not found" >&2; exit 1; }
  # The first pass above ran the whole server suite on both drivers. The passes below
  # force one engine or the driver off, so each runs the tests whose bytes go through
  # that engine or driver, and leaves out (saying so) the ones that cannot differ:
  # - modules that never choose an engine: auth, listings, rules, metrics, the access
  #   log, security checks of paths, sidecars, tools, header details, WebDAV methods;
  # - the io_uring receive buffers' bookkeeping, and a browser loading a listing
  #   (generated bytes) over HTTP/2;
  # - HTTP/2 uploads (received by copy whatever the engines): on each driver once;
  # - tests that pick both drivers themselves (uploads, resumable uploads), which the
  #   epoll passes already run on both, so the uring passes leave them out;
  # - two tests of the publish pool (a 768 MiB and a 1 GiB upload) whose subject is
  #   the pool off the loop, not an engine.
  engine_blind=(access:: auth:: listing:: metrics:: rules:: security:: sidecars:: tools::
    http_details:: upload_metrics:: webdav::
    upload::a_get_is_answered_promptly_while_a_large_upload_is_published
    upload::a_get_is_answered_promptly_while_a_large_dropped_upload_is_freed
    driver::uring_gives_back_the_receive_buffers_a_burst_used
    driver::uring_idle_connections_hold_no_buffer
    driver::uring_frees_spare_buffers_a_burst_left
    h2::chromium_loads_a_listing_over_https_by_http2)
  both_drivers=(upload:: resume::)
  # HTTP/2 uploads are received by copy whatever the engines: once per driver.
  per_driver=(h2_upload::)
  # Tests of a driver's timers, shutdown, reload and buffer keeping, whose bodies are
  # incidental: the io_uring pass runs them (the first pass ran them on epoll), the
  # passes forcing an engine off leave them out (about 50 s of waiting a pass).
  driver_only=(h2::a_reload_that_retires_a_worker_sends_goaway_and_lets_its_streams_finish
    h2::shutdown_sends_goaway_and_lets_the_open_stream_finish
    h2::a_continuation_flood_is_cut_off
    h2::streams_past_the_limit_are_refused_and_a_shut_window_times_out
    h2_data::a_writer_gets_in_soon_when_framed_data_waits_behind_a_stalled_client
    driver::a_pipelined_request_does_not_keep_a_read_buffer_while_a_large_response_waits
    tls::tls_partial_heads_hold_only_their_bytes
    protocol::header_timeout_sends_408_while_others_are_served
    protocol::a_slow_reader_keeps_its_connection_past_the_idle_timeout_while_it_reads
    upload::a_stalled_body_hits_the_body_timeout
    upload::a_large_stalled_body_hits_the_body_timeout_on_both_drivers)
  skips() { for t in "$@"; do printf -- '--skip\n%s\n' "$t"; done; }
  mapfile -t epoll_skips < <(skips "${engine_blind[@]}" "${per_driver[@]}" "${driver_only[@]}")
  mapfile -t uring_skips < <(skips "${engine_blind[@]}" "${both_drivers[@]}")
  mapfile -t uring_engine_skips < <(skips "${engine_blind[@]}" "${both_drivers[@]}" "${per_driver[@]}" "${driver_only[@]}")
  echo "(forced-fallback passes leave out: ${engine_blind[*]} ${per_driver[*]}; uring passes also ${both_drivers[*]}; the uring pass runs ${per_driver[*]}; passes forcing an engine off also leave out ${driver_only[*]})"
  # ZCOPY_IO=epoll: the HTTP/2 tests run on both drivers unless it names one, and
  # the io_uring passes below cover that half.
  for e in sendfile splice mmap; do
    echo "== server suite with $e forced off"
    ZCOPY_IO=epoll ZCOPY_DISABLE="$e" server "${epoll_skips[@]}"
  done
  echo "== lending with tee forced off (hot snapshots by sendfile, not from template pipes), both drivers"
  ZCOPY_DISABLE=tee server lending::
  ZCOPY_IO=uring ZCOPY_DISABLE=tee server lending::
  echo "== server suite with inotify forced off (small files revalidated with fstat): files, variants, sidecars, conditionals, lending"
  ZCOPY_DISABLE=inotify server files:: compress:: sidecars:: http_details:: lending::
  echo "== server suite on the io_uring driver"
  ZCOPY_IO=uring server "${uring_skips[@]}"
  echo "== server suite on the io_uring driver with mmap forced off (large bodies read, then sent)"
  ZCOPY_IO=uring ZCOPY_DISABLE=mmap server "${uring_engine_skips[@]}"
  echo "== server suite on the io_uring driver with splice forced off (sendfile lends, on the loop)"
  ZCOPY_IO=uring ZCOPY_DISABLE=splice server "${uring_engine_skips[@]}"
  echo "== server suite with io_uring forced off (must fall back to epoll and say so): driver, byte-exact files, tls"
  ZCOPY_IO=uring ZCOPY_DISABLE=uring server driver:: files::get_is_byte_exact tls::
fi
