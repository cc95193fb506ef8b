#!/usr/bin/env bash
# Debian packages the tests need: Chromium for browser tests, Pango/HarfBuzz and
# fonts for WeasyPrint (PDF reports; DejaVu, Droid Sans Fallback for Chinese,
# Japanese and Korean, and Noto Color Emoji for emoji), poppler-utils to read PDFs back in tests,
# redis-server for the fault tests (they start and stop a Redis of their own).
# Installs only what is missing; needs root (or sudo) when something is missing.
set -euo pipefail
PACKAGES=(chromium libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 libfontconfig1
          fonts-dejavu-core fonts-droid-fallback fonts-noto-color-emoji poppler-utils
          redis-server)
missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "error: run as root or install: apt-get install ${missing[*]}" >&2; exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
