#!/usr/bin/env bash
# Screenshots a p3d HTML report (or any self-contained HTML file) with
# Debian's headless Chromium, to check that it renders and to make
# docs/report-screenshot.png.
#
#   scripts/render_report.sh report.html out.png [width] [height]
#
# Installs Debian's chromium package when /usr/bin/chromium is missing (needs
# root and apt). The page is loaded from a file:// URL with networking off,
# so a report that tried to fetch anything would render without it.
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 report.html out.png [width=1200] [height=2400]" >&2
  exit 2
fi
html=$(realpath "$1")
out=$2
width=${3:-1200}
height=${4:-2400}

chromium=/usr/bin/chromium
if [[ ! -x $chromium ]]; then
  echo "render_report: installing Debian's chromium" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

out_abs=$(realpath -m "$out")
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$chromium" --headless --no-sandbox --disable-gpu --hide-scrollbars \
  --user-data-dir="$profile" --no-first-run --disable-extensions \
  --proxy-server="127.0.0.1:9" --proxy-bypass-list="<-loopback>" \
  --window-size="${width},${height}" --screenshot="$out_abs" "file://$html" 2>"$profile/log" || {
  cat "$profile/log" >&2
  exit 1
}
[[ -s $out_abs ]] || { echo "render_report: no screenshot written" >&2; cat "$profile/log" >&2; exit 1; }
echo "$out_abs"
