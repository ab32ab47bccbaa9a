#!/usr/bin/env bash
# Install Debian packages the project runs as services: `infra/apt-install.sh PACKAGE=BINARY ...`.
#
#   infra/apt-install.sh postgresql='/usr/lib/postgresql/*/bin/postgres' redis-server=redis-server
#
# BINARY proves that PACKAGE is installed: a command on PATH or an absolute path (a glob is allowed,
# e.g. PostgreSQL's versioned folder). Idempotent: packages whose binary is there are left alone;
# for the others it runs `apt-get update` first (the lists may be missing or stale) and installs
# Debian's candidate. No version is pinned: Debian's security archive keeps only the newest build of
# a package, so an exact pin stops working. What is installed is recorded in
# $TEXTML_VAR_DIR/apt/PACKAGE.version (default var/). Debian's own services of these packages are
# not started by the install (policy-rc.d): the project runs its own, on loopback, under supervisord.
# Without apt, or without root and sudo, it says what failed and what to install, and exits non-zero.
set -euo pipefail

VAR_DIR="${TEXTML_VAR_DIR:-$(cd "$(dirname "$0")/.." && pwd)/var}"

say() { printf 'apt-install: %s\n' "$*" >&2; }
fail() { say "FAILED: $*"; exit 1; }

[ $# -gt 0 ] || fail "usage: $0 PACKAGE=BINARY ... (e.g. redis-server=redis-server)"

# The first existing file a BINARY names (a command on PATH, a path or a glob), or nothing.
find_binary() {
    local spec="$1" match
    if [[ "$spec" != /* ]]; then
        command -v "$spec" 2>/dev/null || true
        return
    fi
    for match in $spec; do  # unquoted on purpose: expand the glob; the highest version sorts last
        [ -x "$match" ] && printf '%s\n' "$match"
    done | tail -n 1
}

record() {
    local package="$1" binary="$2"
    mkdir -p "$VAR_DIR/apt"
    printf 'package %s %s\nbinary %s %s\n' "$package" \
        "$(dpkg-query -W -f='${Version}' "$package" 2>/dev/null || echo unknown)" \
        "$binary" "$("$binary" --version 2>/dev/null | head -n 1)" > "$VAR_DIR/apt/$package.version"
}

missing=()
for pair in "$@"; do
    [[ "$pair" == *=* ]] || fail "'$pair' is not PACKAGE=BINARY"
    package="${pair%%=*}"
    binary="$(find_binary "${pair#*=}")"
    if [ -n "$binary" ]; then
        record "$package" "$binary"
        say "$package: $binary already installed; nothing to do"
    else
        missing+=("$package")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

command -v apt-get >/dev/null 2>&1 \
    || fail "apt-get not found: install ${missing[*]} with this system's package manager"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || fail "not root and no sudo: run 'apt-get install -y ${missing[*]}' as root"
    SUDO="sudo -n"
fi

# Keep Debian's init scripts from starting a system-wide server on the default port during the install.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi

say "installing Debian's candidate ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q || fail "apt-get update failed (no access to the Debian mirror?)"
$SUDO apt-get install -y --no-install-recommends "${missing[@]}" \
    || fail "apt-get install ${missing[*]} failed; 'apt-cache policy ${missing[*]}' shows what apt can see"

for pair in "$@"; do
    package="${pair%%=*}"
    binary="$(find_binary "${pair#*=}")"
    [ -n "$binary" ] || fail "the $package package installed, but ${pair#*=} is missing"
    record "$package" "$binary"
    say "$package: $binary ($("$binary" --version 2>/dev/null | head -n 1)) recorded in $VAR_DIR/apt/"
done
