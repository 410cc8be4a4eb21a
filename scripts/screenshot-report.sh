#!/usr/bin/env bash
# Render a registrar HTML report (nightly, audit or data-quality) in headless Chromium and
# save a screenshot, to check that the self-contained page renders without any network.
# Usage: scripts/screenshot-report.sh REPORT.html OUT.png   (needs Debian's chromium)
set -euo pipefail
in=$(realpath "$1"); out=$(realpath -m "$2")
command -v chromium >/dev/null || { echo "chromium is not installed (apt-get install chromium)" >&2; exit 2; }
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --window-size=1200,1800 --hide-scrollbars \
  --screenshot="$out" "file://$in" >/dev/null 2>&1
test -s "$out" && echo "wrote $out"
