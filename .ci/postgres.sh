#!/usr/bin/env bash
# PostgreSQL for the tuning tests: only the server binaries from Debian's package. The tests start
# their own throwaway server on 127.0.0.1 with a free port (tests/integration/test_tune_postgres.py),
# so no cluster is created or started here.
set -euo pipefail

if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then
    echo "postgres.sh: server binaries present: $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tail -1)"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
# Debian's postgresql-common would create and start a 'main' cluster on install; we do not need it.
$SUDO mkdir -p /etc/postgresql-common/createcluster.d
echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.d/cnnkit-ci.conf >/dev/null
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null
echo "postgres.sh: installed $(ls -d /usr/lib/postgresql/*/bin | tail -1)"
