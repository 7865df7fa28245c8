# Shared by scripts/dev.sh and scripts/test.sh: system packages and the virtualenv.
# shellcheck shell=bash

ensure_bwrap() {
  # Bubblewrap isolates local sandboxes; without it they run as plain processes.
  command -v bwrap >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing bubblewrap (sandbox isolation)…" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap; } >/dev/null 2>&1 \
      || echo "warning: could not install bubblewrap; sandboxes will run unisolated" >&2
  else
    echo "warning: bubblewrap (bwrap) is not installed and this user cannot install it:" >&2
    echo "         local sandboxes run as plain processes. Install the 'bubblewrap' package." >&2
  fi
}

ensure_venv() {
  # $1: the pip extras, e.g. "" or "[test]"
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
  fi
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".$1"
}
