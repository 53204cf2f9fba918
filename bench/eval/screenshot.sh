#!/usr/bin/env bash
# Dev-time look at an eval HTML report: a headless Chromium (Debian's `chromium` package) screenshot.
#   bench/eval/screenshot.sh [REPORT.html] [OUT.png]   (default: build/demo-report.html after make demo)
set -euo pipefail
cd "$(dirname "$0")/../.."
in=${1:-build/demo-report.html}
out=${2:-build/demo-report.png}
command -v chromium >/dev/null || { echo "error: chromium is not installed (apt-get install chromium)" >&2; exit 1; }
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1280,2000 \
  --screenshot="$out" "file://$(realpath "$in")" 2>/dev/null
echo "$out"
