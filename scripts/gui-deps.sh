#!/usr/bin/env bash
# Xvfb and Qt's xcb libraries for the napari plugin's tests (pytest-xvfb starts Xvfb; Qt 6 needs the libraries).
# Installs them with apt-get when they are missing and apt-get is usable (root); otherwise says so and exits 0:
# the napari tests are then skipped with the reason (tests/conftest.py). With --required (CI), failing to
# install them is an error.
set -euo pipefail
PACKAGES=(xvfb libxcb-icccm4 libxcb-keysyms1 libxkbcommon-x11-0 libxcb-image0 libxcb-render-util0
          libxcb-xinerama0 libxcb-cursor0 libgl1 libegl1 libfontconfig1 libdbus-1-3)
REQUIRED=0
[ "${1:-}" = "--required" ] && REQUIRED=1

missing() {  # the packages not installed (all of them when dpkg-query is not there to ask)
    local package
    for package in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}\n' "$package" 2>/dev/null | grep -q "install ok installed" || echo "$package"
    done
}

give_up() {
    echo "[gui-deps] $1: the napari tests will be skipped (install: ${PACKAGES[*]})" >&2
    exit "$REQUIRED"
}

if command -v Xvfb >/dev/null 2>&1 && ! command -v dpkg-query >/dev/null 2>&1; then
    echo "[gui-deps] Xvfb found (no dpkg-query to check Qt's xcb libraries)"
    exit 0
fi
mapfile -t MISSING < <(missing)
if [ "${#MISSING[@]}" -eq 0 ]; then
    echo "[gui-deps] Xvfb and Qt's xcb libraries are installed"
    exit 0
fi
command -v apt-get >/dev/null 2>&1 || give_up "missing ${MISSING[*]} and no apt-get"
[ "$(id -u)" -eq 0 ] || give_up "missing ${MISSING[*]} and not root (run: sudo bash scripts/gui-deps.sh)"
echo "[gui-deps] installing ${MISSING[*]}"
if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${MISSING[@]}" >/dev/null; }; then
    give_up "apt-get could not install ${MISSING[*]}"
fi
