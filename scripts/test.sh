#!/usr/bin/env bash
# Set up (ffmpeg, .venv with test packages) and run the test suite. Extra arguments go to pytest.
# Without a -m of yours, the tests marked slow are left out (they run with -m slow; -m "" runs everything).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh requirements-dev.txt
export TF_CPP_MIN_LOG_LEVEL=2
marker=(-m "not slow")
for arg in "$@"; do
  case "$arg" in -m|-m*) marker=() ;; esac
done
exec .venv/bin/python -m pytest "${marker[@]}" "$@"
