#!/usr/bin/env bash
# System packages for the serving tests: Debian's Chromium for the web page test (Playwright
# drives it through executable_path; `playwright install` would download a browser, which CI
# cannot). Quiet, idempotent, and skipped when chromium is already there.
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
chromium --version
