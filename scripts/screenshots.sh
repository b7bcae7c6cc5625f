#!/usr/bin/env bash
# Renders the directory listing of `zcopy serve` in headless Chromium (Debian's
# `chromium`) and writes docs/listing-light.png, docs/listing-dark.png and
# docs/listing-narrow.png (a phone-sized window), which the README shows.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v chromium >/dev/null || { echo "screenshots.sh: chromium is not installed (apt-get install chromium)" >&2; exit 2; }

cargo build -q --bin zcopy
work=$(mktemp -d)
server=
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# A demo tree two levels down (breadcrumbs, parent link): directories, natural order, sizes from bytes to GiB (sparse), a name
# that needs escaping, and a dotfile that stays hidden.
www="$work/www/projects/demo"
mkdir -p "$www/photos" "$www/src" "$www/.git"
for i in 1 2 10 11; do head -c $((i * 1234)) /dev/zero > "$www/report-$i.pdf"; done
head -c 734003 /dev/zero > "$www/slides.odp"
truncate -s 3G "$www/disk.img"
printf 'hello\n' > "$www/README.md"
printf 'x' > "$www/<b>&\"x'.txt"
touch -d '2024-03-01 09:30' "$www/report-1.pdf" "$www/photos"
touch -d '2025-07-14 18:05' "$www/slides.odp"

./target/debug/zcopy -q serve "$work/www" --listen 127.0.0.1:0 > "$work/out" &
server=$!
for _ in $(seq 50); do grep -q http:// "$work/out" 2>/dev/null && break; sleep 0.1; done
url=$(grep -o 'http://[^ ]*' "$work/out" | head -1)projects/demo/

shot() { # scheme width height file
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$work/profile-$4" --hide-scrollbars \
    --blink-settings="preferredColorScheme=$1" \
    --window-size="$2,$3" --screenshot="docs/$4" "$url" 2>/dev/null
  echo "wrote docs/$4"
}
mkdir -p docs
shot 1 1000 620 listing-light.png
shot 0 1000 620 listing-dark.png
shot 1 390 760 listing-narrow.png
