#!/usr/bin/env bash
# Set up, write config.json, fill the library with a sample (the shared clips when present, else generated
# episodes), index it on the embedded stores and search one frame of it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL=2
PY=.venv/bin/python
$PY run.py init
library=$($PY -c "from animeback.config import load_settings; print(load_settings().library_path)")
clips="../shared/data/clips"
if [ -z "$(ls -A "$library" 2>/dev/null)" ]; then
  if [ -d "$clips" ]; then
    echo "sample library: the clips in $clips, linked into $library/samples"
    mkdir -p "$library/samples"
    for f in "$clips"/*; do ln -sf "$(cd "$(dirname "$f")" && pwd)/$(basename "$f")" "$library/samples/"; done
  else
    echo "sample library: generated episodes in $library/synthetic"
    $PY -c "
from pathlib import Path
from animeback.sources.synthetic import make_episode
for i in range(1, 4):
    make_episode(Path('$library') / 'synthetic' / f'Synthetic - {i:02d}.mp4', seed=i, duration=30)
"
  fi
fi
$PY run.py process
query=$(mktemp --suffix=.jpg)
first=$(find -L "$library" -type f \( -name '*.mp4' -o -name '*.webm' -o -name '*.mkv' \) | sort | head -n 1)
ffmpeg -v error -y -ss 5 -i "$first" -frames:v 1 "$query"
echo "searching a frame taken at 0:05 of $first:"
$PY run.py search "$query"
rm -f "$query"
echo "done. Next: put your episodes in $library/<series id>/ and run: .venv/bin/python run.py process"
echo "serve the website and API: .venv/bin/python app.py  (then open http://127.0.0.1:4000/)"
