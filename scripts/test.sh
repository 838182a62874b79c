#!/usr/bin/env bash
# Set up (ffmpeg, .venv with test packages) and run the test suite, in a private network namespace. Extra arguments
# go to pytest.
# Without a -m of yours, the tests marked slow are left out (they run with -m slow; -m "" runs everything).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh requirements-dev.txt
export TF_CPP_MIN_LOG_LEVEL=2
marker=(-m "not slow")
for arg in "$@"; do
  case "$arg" in -m|-m*) marker=() ;; esac
done
# In a private network namespace with only loopback up: no test reaches the network, and the servers the tests
# start (gunicorn, a Milvus standalone that listens on every interface) can be reached from this machine only.
if [ "$(id -u)" -eq 0 ] && unshare --net true 2>/dev/null; then
  netns=(unshare --net)
elif unshare --net --map-root-user true 2>/dev/null; then
  netns=(unshare --net --map-root-user)
else
  echo "note: cannot make a private network namespace (unshare); the tests that start a Milvus standalone will fail" >&2
  exec .venv/bin/python -m pytest "${marker[@]}" "$@"
fi
exec "${netns[@]}" sh -c 'ip link set lo up && exec "$@"' sh .venv/bin/python -m pytest "${marker[@]}" "$@"
