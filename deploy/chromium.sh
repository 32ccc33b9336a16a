#!/usr/bin/env bash
# Make sure a headless Chromium is available for the dashboard browser tests
# (Debian's `chromium` package; the tests drive it over the DevTools protocol).
set -euo pipefail
for c in chromium chromium-browser; do
  command -v "$c" >/dev/null && exit 0
done
echo "[chromium] installing Debian's chromium" >&2
if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null
else sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; fi
command -v chromium >/dev/null || { echo "[chromium] install failed" >&2; exit 1; }
