#!/usr/bin/env bash
# Debian's Chromium for the end-to-end dashboard tests (Playwright drives it; its own
# browser download cannot work without internet). Installs it when we are root.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "installing Debian's chromium for the browser tests"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
else
  echo "Chromium is missing: install Debian's 'chromium' package (sudo apt-get install chromium) for the browser tests." >&2
  if [ "${CI:-}" = "true" ]; then exit 1; fi
fi
