#!/usr/bin/env bash
# Makes sure a headless Chromium is installed for the browser test
# (web/browser_test.go): Debian's chromium package, installed as root with
# apt when missing. Prints nothing when it is already there.
set -euo pipefail
for name in chromium chromium-browser google-chrome; do
  command -v "$name" >/dev/null 2>&1 && exit 0
done
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "chromium.sh: installing Debian's chromium for the browser test" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2 || {
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
  }
  exit 0
fi
echo "chromium.sh: no chromium found; install it with: sudo apt-get install -y chromium" >&2
exit 1
