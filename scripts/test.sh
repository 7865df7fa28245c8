#!/usr/bin/env bash
# Installs Runyard with its test tools into .venv, then runs ruff, mypy and the test suite.
# Extra arguments go to pytest (for instance -k lifecycle).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_setup.sh
ensure_bwrap

# The store tests run against Postgres on 127.0.0.1:5432 as well as SQLite.
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start || true
  fi
fi
if [ -n "${CI:-}" ]; then
  export RUNYARD_TEST_REQUIRE_POSTGRES=1  # in CI a missing Postgres fails, never skips
fi

ensure_venv "[test]"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy .

status=0
.venv/bin/pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$status"
