#!/usr/bin/env bash
# Install the system packages the tests and `make demo-cloud` need: PostgreSQL 15 + PostGIS 3 (for the
# local pgstac STAC API, see SPEC §7). Idempotent: returns at once when everything is installed.
# Debian (bookworm) only; run as root (CI) or with sudo available.
set -euo pipefail

PACKAGES=(postgresql postgresql-15-postgis-3)

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "system packages already installed: ${PACKAGES[*]}"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: apt-get not found; install PostgreSQL 15 and PostGIS 3 yourself: ${missing[*]}" >&2
    exit 1
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "error: need root (or sudo) to install: ${missing[*]}" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
# Update the package lists only when they are absent or cannot resolve what we need.
if ! apt-cache show "${missing[@]}" >/dev/null 2>&1; then
    "${SUDO[@]}" apt-get update -qq
fi
echo "installing: ${missing[*]}"
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "installed: ${missing[*]}"
