#!/usr/bin/env bash
# System packages the test suite needs that PyPI cannot provide: PostgreSQL (outbox concurrency
# tests start a throw-away server). Installs them with apt when missing and we are allowed to.
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then
    exit 0
fi
if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    echo "Installing PostgreSQL from Debian packages (needed by the outbox tests)..." >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
    exit 0
fi
echo "PostgreSQL (initdb, pg_ctl) is required by the test suite; please install it." >&2
exit 1
