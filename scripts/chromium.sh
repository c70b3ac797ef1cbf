#!/usr/bin/env bash
# Makes sure a headless Chromium is installed for the browser test
# (web/browser_test.go): Debian's chromium package, installed as root with
# apt when missing, without its recommended packages (a desktop's fonts,
# printing, D-Bus and Python helpers: headless Chromium needs none of them).
# apt's output goes to a log file ($AUDITLOG_APT_LOG, by default
# ${TMPDIR:-/tmp}/auditlog-chromium-apt.log); its tail is printed when the
# install fails. Prints nothing when Chromium is already there.
set -euo pipefail
for name in chromium chromium-browser google-chrome; do
  command -v "$name" >/dev/null 2>&1 && exit 0
done
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  log=${AUDITLOG_APT_LOG:-${TMPDIR:-/tmp}/auditlog-chromium-apt.log}
  echo "chromium.sh: installing Debian's chromium for the browser test (apt's output: $log)" >&2
  apt_install() { apt-get install -y --no-install-recommends chromium; }
  export DEBIAN_FRONTEND=noninteractive
  # A fresh machine may have no package lists yet: update once, then retry.
  if ! { apt_install || { apt-get update && apt_install; }; } >"$log" 2>&1; then
    echo "chromium.sh: installing chromium failed; the end of $log:" >&2
    tail -n 20 "$log" >&2
    exit 1
  fi
  exit 0
fi
echo "chromium.sh: no chromium found; install it with: sudo apt-get install -y --no-install-recommends chromium" >&2
exit 1
