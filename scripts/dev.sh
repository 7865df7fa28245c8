#!/usr/bin/env bash
# Installs Runyard into .venv and runs it: Temporal dev server + worker + API (runyard dev).
# Extra arguments go to `runyard dev` (for instance --port 9000).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_setup.sh
ensure_bwrap
ensure_venv ""
exec .venv/bin/runyard dev "$@"
