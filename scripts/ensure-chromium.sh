#!/usr/bin/env bash
# Install Debian's Chromium for the browser tests unless /usr/bin/chromium is already there.
# Playwright drives this system browser; it never downloads a browser of its own.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: /usr/bin/chromium is missing and apt-get is not available to install it" >&2
  exit 1
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
apt=("${sudo[@]}" apt-get -q -y -o DPkg::Lock::Timeout=300)

echo "==> installing Debian chromium (apt-get)"
"${apt[@]}" update </dev/null
"${apt[@]}" install chromium </dev/null
/usr/bin/chromium --version
