#!/usr/bin/env bash
# Debian's Chromium and a CJK font for the console's browser test (tests/test_console.py) and its screenshots.
# Idempotent: installs Debian's `chromium` and `fonts-wqy-microhei` with apt-get if missing (never
# `playwright install`: that downloads a browser), checks the browser starts, and prints its executable path on
# its LAST line (the test reads that line).
#   HOTLINE_CHROMIUM: an executable to use instead (nothing is installed then)
set -euo pipefail

if [ -n "${HOTLINE_CHROMIUM:-}" ]; then
    [ -x "$HOTLINE_CHROMIUM" ] || { echo "chromium.sh: HOTLINE_CHROMIUM=$HOTLINE_CHROMIUM is not executable" >&2; exit 1; }
    echo "$HOTLINE_CHROMIUM"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
dpkg -s fonts-wqy-microhei >/dev/null 2>&1 || missing+=(fonts-wqy-microhei)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "chromium.sh: installing Debian's ${missing[*]}" >&2
    "${SUDO[@]}" apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >&2
    command -v fc-cache >/dev/null 2>&1 && fc-cache -f >/dev/null 2>&1 || true
fi

EXE="$(command -v chromium)"
"$EXE" --headless --no-sandbox --disable-gpu --version >&2
echo "$EXE"
