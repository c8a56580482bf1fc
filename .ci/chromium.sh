#!/usr/bin/env bash
# Debian's Chromium for the browser tests (the web page: tests/e2e/test_web_page.py; the report:
# tests/e2e/test_eval_report.py). Playwright drives it through executable_path; `playwright install`
# would download a browser, which CI cannot. Idempotent: skipped when chromium is already there.
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
chromium --version
