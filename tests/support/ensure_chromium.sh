#!/bin/sh
# Makes Debian's Chromium available for the browser test (tests/e2e): installs it with apt
# when it is missing and we are root; otherwise says what to do. Safe to run every time.
set -eu
if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
else
  echo "chromium is missing: install Debian's chromium (sudo apt-get install chromium)" \
       "so that the browser test in tests/e2e can run" >&2
fi
