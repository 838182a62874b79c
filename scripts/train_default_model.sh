#!/usr/bin/env bash
# Train the shipped model (models/animeback-v3) with `run.py train`, as models/README.md records.
#
#   bash scripts/train_default_model.sh [extra run.py train options]
#
# Data: the 14 real clips kept for training only (../shared/data/train, TRAIN=folder to point elsewhere); none of
# the benchmarks' evaluation clips (../shared/data/clips), so the benchmarks measure the model on video it never saw.
# On this project's 2-core CPU it takes about 5 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
train=${TRAIN:-../shared/data/train}
out=$(realpath -m "${OUT:-models/animeback-v3}")
[ -d "$train" ] || { echo "error: $train not found (set TRAIN=folder of the shared training clips)" >&2; exit 1; }
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
shopt -s nullglob  # a pattern no file matches is left out (the folder also holds README.md and manifest.tsv)
clips=("$train"/*.mp4 "$train"/*.webm "$train"/*.mkv "$train"/*.gif)
[ ${#clips[@]} -gt 0 ] || { echo "error: no videos in $train" >&2; exit 1; }
for clip in "${clips[@]}"; do
  ln -s "$(realpath "$clip")" "$data/"
done
config="$data/config.json"
printf '{"library_dir": "%s/empty"}\n' "$data" > "$config"
exec .venv/bin/python run.py --config "$config" train --videos "$data" --out "$out" "$@"
