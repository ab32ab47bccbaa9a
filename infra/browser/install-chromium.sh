#!/usr/bin/env bash
# Install Debian's chromium package (the headless browser the web-chat test drives through Playwright).
#
# Idempotent: does nothing when $CHROMIUM_PATH (default /usr/bin/chromium) already runs. Playwright's
# own browser download needs its CDN, which the build machines cannot reach, so the tests launch
# this binary with `executable_path` instead. The version is pinned (override CHROMIUM_VERSION, or
# set it to "any" to take the distribution's candidate); on a machine without apt, or without root
# and sudo, the script says what failed and what to install by hand, and exits non-zero.
set -euo pipefail

CHROMIUM_PATH="${CHROMIUM_PATH:-/usr/bin/chromium}"
CHROMIUM_VERSION="${CHROMIUM_VERSION:-156.0.8078.108-1~deb12u1}"

say() { printf 'install-chromium: %s\n' "$*" >&2; }
fail() { say "FAILED: $*"; exit 1; }

if [ -x "$CHROMIUM_PATH" ] && "$CHROMIUM_PATH" --version >/dev/null 2>&1; then
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

package="chromium"
[ "$CHROMIUM_VERSION" = "any" ] || package="chromium=$CHROMIUM_VERSION"

say "installing $package"
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y --no-install-recommends "$package"; then
    say "apt-get install failed; refreshing the package lists and trying once more"
    $SUDO apt-get update -q || fail "apt-get update failed (no access to the Debian mirror?)"
    $SUDO apt-get install -y --no-install-recommends "$package" \
        || fail "apt-get install $package failed; 'apt-cache policy chromium' shows which versions apt can see" \
                "(set CHROMIUM_VERSION=any to take the candidate)"
fi

[ -x "$CHROMIUM_PATH" ] || fail "the chromium package installed, but $CHROMIUM_PATH is missing"
say "installed $("$CHROMIUM_PATH" --version 2>/dev/null) at $CHROMIUM_PATH"
