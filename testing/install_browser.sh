#!/usr/bin/env bash
# Chromium for the dashboard's browser tests (tests/web/test_browser.py), from Debian's packages.
# Playwright for Python drives it (pip extra "test"); Playwright's own browser download is never
# used. Safe to run twice: does nothing when /usr/bin/chromium exists.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  /usr/bin/chromium --version 2>/dev/null || true
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core
/usr/bin/chromium --version 2>/dev/null || true
