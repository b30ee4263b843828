#!/usr/bin/env bash
# Make Debian's chromium available for the browser tests (tests/test_browser.py).
#
# - /usr/bin/chromium (or $DRSL_CHROMIUM) already there: nothing to do.
# - apt-get available and we are root (or sudo works without a password): install it.
# - otherwise: say why and exit 0, so that the browser tests skip with a clear reason.
#
# Never runs `playwright install`: the tests drive the system chromium through Playwright.
# Usage: tools/ensure_chromium.sh   (then: python -m pytest -m browser tests/test_browser.py)
# Under CI (CI=true) a chromium that cannot be had is an error, not a skip: CI must run them.
set -u

skip() {  # say why; skip the browser tests locally, fail under CI
    echo "ensure_chromium: $1"
    if [ "${CI:-}" = "true" ]; then
        echo "ensure_chromium: CI=true: the browser tests must run here, failing" >&2
        exit 1
    fi
    exit 0
}

CHROMIUM="${DRSL_CHROMIUM:-/usr/bin/chromium}"

if [ -x "$CHROMIUM" ]; then
    echo "ensure_chromium: found $CHROMIUM ($("$CHROMIUM" --version 2>/dev/null || echo 'version unknown'))"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    skip "$CHROMIUM missing and no apt-get here: browser tests will skip"
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    skip "$CHROMIUM missing, not root and no passwordless sudo: browser tests will skip"
fi

echo "ensure_chromium: installing Debian's chromium with apt-get"
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get update -qq; then
    skip "apt-get update failed: browser tests will skip"
fi
if ! $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null; then
    skip "apt-get install chromium failed: browser tests will skip"
fi

if [ -x "$CHROMIUM" ]; then
    echo "ensure_chromium: installed $CHROMIUM ($("$CHROMIUM" --version 2>/dev/null || echo 'version unknown'))"
else
    skip "apt-get ran but $CHROMIUM is still missing: browser tests will skip"
fi
exit 0
