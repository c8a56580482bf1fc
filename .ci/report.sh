#!/usr/bin/env bash
# System packages for the report test (tests/e2e/test_eval_report.py): Debian's Chromium, which
# Playwright drives through executable_path (never `playwright install`: CI cannot download a
# browser). Idempotent: skipped when chromium is already there (.ci/serve.sh may have installed it).
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
chromium --version
