#!/usr/bin/env bash
# Install what AnimeBack needs: ffmpeg (apt) and a virtual environment .venv with the pinned packages.
# Usage: bash scripts/setup.sh [requirements file]   (default requirements.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
requirements="${1:-requirements.txt}"

# apt_install COMMAND PACKAGE: install a Debian package unless its command is already there
apt_install() {
  command -v "$1" >/dev/null && return 0
  echo "installing $2 (apt)"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  if [ -z "${APT_UPDATED:-}" ]; then $SUDO apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$2" >/dev/null
}
apt_install ffmpeg ffmpeg
apt_install ffprobe ffmpeg
# the tests drive the website in a real headless browser
if [ "$requirements" = "requirements-dev.txt" ]; then
  apt_install chromium chromium
  # scripts/test.sh runs the tests in a private network namespace with only loopback up (`ip link`)
  apt_install ip iproute2
  # tests/test_scale_out.py and the counters' tests run a real Redis
  apt_install redis-server redis-server
  # axe-core, the accessibility checker the website tests inject into the page (pinned in its package-lock.json)
  apt_install npm npm
  lock="tests/browser/package-lock.json"
  if [ ! -f tests/browser/node_modules/.installed ] || [ "$lock" -nt tests/browser/node_modules/.installed ]; then
    echo "installing axe-core (npm)"
    npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error >/dev/null
    touch tests/browser/node_modules/.installed
  fi
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.installed-$(cat requirements*.txt pyproject.toml | sha256sum | cut -c1-16)-$(basename "$requirements")"
install_packages() {
  .venv/bin/python -m pip install -q --upgrade pip &&
    .venv/bin/python -m pip install -q -r "$requirements" &&
    # AnimeBack itself, editable: `import animeback` and the `animeback` command work from anywhere, no sys.path edits
    .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
}
if [ ! -f "$stamp" ]; then
  echo "installing Python packages from $requirements"
  if ! install_packages; then  # e.g. a .venv left half-written by an interrupted install: start it again once
    echo "the install failed; recreating .venv and trying once more"
    rm -rf .venv
    "$PYTHON" -m venv .venv
    install_packages
  fi
  touch "$stamp"
fi
