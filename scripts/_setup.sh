# Shared by scripts/dev.sh and scripts/test.sh: system packages and the virtualenv.
# shellcheck shell=bash

ensure_bwrap() {
  # Bubblewrap isolates local sandboxes and is required: without it every run fails
  # SANDBOX_UNAVAILABLE (unless RUNYARD_SANDBOX_BWRAP=off, which runs agent code unisolated).
  # slirp4netns gives sandboxes with network access their own network (best effort).
  if ! command -v slirp4netns >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slirp4netns \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slirp4netns; }; } >/dev/null 2>&1 \
      || echo "warning: could not install slirp4netns; sandboxes with network access will fail" >&2
  fi
  command -v bwrap >/dev/null 2>&1 && return 0
  if [ "${RUNYARD_SANDBOX_BWRAP:-auto}" = off ]; then
    echo "warning: RUNYARD_SANDBOX_BWRAP=off and bubblewrap is missing: sandboxes are NOT isolated" >&2
    return 0
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing bubblewrap (sandbox isolation)…" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap; } >/dev/null 2>&1 || true
  fi
  if ! command -v bwrap >/dev/null 2>&1; then
    echo "error: bubblewrap (bwrap) is required for sandboxes and could not be installed." >&2
    echo "       Install the 'bubblewrap' package (or set RUNYARD_SANDBOX_BWRAP=off to run" >&2
    echo "       agent code unisolated, for trusted prompts only)." >&2
    return 1
  fi
}

ensure_venv() {
  # $1: the pip extras, e.g. "" or "[test]"
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
  fi
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".$1"
}
