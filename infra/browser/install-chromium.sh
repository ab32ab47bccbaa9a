#!/usr/bin/env bash
# Install Debian's chromium package (the headless browser the web-chat test drives through Playwright).
#
# Only `make test` needs it (the browser test); `make demo` does not. Idempotent: does nothing when
# $CHROMIUM_PATH (default /usr/bin/chromium) already runs. Playwright's own browser download needs its
# CDN, which the build machines cannot reach, so the tests launch this binary with `executable_path`.
#
# No version is pinned: Debian's security archive keeps only the newest chromium build, so an exact
# pin stops working within days. The script installs the distribution's candidate and records the
# version it installed in $TEXTML_VAR_DIR/browser/chromium.version (default var/). On a machine
# without apt, or without root and sudo, it says what failed and what to install by hand, and exits
# non-zero.
set -euo pipefail

CHROMIUM_PATH="${CHROMIUM_PATH:-/usr/bin/chromium}"
VAR_DIR="${TEXTML_VAR_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/var}"
RECORD="$VAR_DIR/browser/chromium.version"

say() { printf 'install-chromium: %s\n' "$*" >&2; }
fail() { say "FAILED: $*"; exit 1; }

record() {
    mkdir -p "$(dirname "$RECORD")"
    local package_version
    package_version="$(dpkg-query -W -f='${Version}' chromium 2>/dev/null || echo unknown)"
    printf 'package chromium %s\nbinary %s\n' "$package_version" "$("$CHROMIUM_PATH" --version 2>/dev/null)" > "$RECORD"
}

if [ -x "$CHROMIUM_PATH" ] && "$CHROMIUM_PATH" --version >/dev/null 2>&1; then
    record
    say "$("$CHROMIUM_PATH" --version 2>/dev/null) already at $CHROMIUM_PATH; nothing to do"
    exit 0
fi

command -v apt-get >/dev/null 2>&1 \
    || fail "apt-get not found: this script installs Debian's 'chromium' package; on another system install" \
            "Chromium by hand and point the browser test at it with CS_CHROMIUM=/path/to/chromium"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || fail "not root and no sudo: run 'apt-get install -y chromium' as root"
    SUDO="sudo -n"
fi

say "installing Debian's candidate chromium"
export DEBIAN_FRONTEND=noninteractive
# The lists may be missing (fresh machine) or stale (the candidate has left the archive): refresh first.
$SUDO apt-get update -q || fail "apt-get update failed (no access to the Debian mirror?)"
$SUDO apt-get install -y --no-install-recommends chromium \
    || fail "apt-get install chromium failed; 'apt-cache policy chromium' shows which versions apt can see"

[ -x "$CHROMIUM_PATH" ] || fail "the chromium package installed, but $CHROMIUM_PATH is missing"
record
say "installed $("$CHROMIUM_PATH" --version 2>/dev/null) at $CHROMIUM_PATH (recorded in $RECORD)"
