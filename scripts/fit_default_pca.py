"""Fit the default PCA shipped as models/pca_default.npz, so the first episode is searchable at once.

    python -m scripts.fit_default_pca [--videos DIR ...] [--dim 256]

It fits on frames of generated cartoon-like videos (animeback/sources/synthetic.py, reproducible from a seed) plus,
when given, real animation (e.g. ../shared/data/clips). The command used for the shipped file is in
models/README.md.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from animeback.config import Settings
from animeback.ingest.library import VIDEO_EXTENSIONS
from animeback.model.embedder import Embedder, PcaModel
from animeback.sources.synthetic import make_episode
from animeback.training.pca import sample_video_features

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=Path, nargs="*", default=[], help="folders of real videos to add")
    parser.add_argument("--synthetic", type=int, default=12, help="generated videos to include")
    parser.add_argument("--per-video", type=int, default=120, help="frames per video")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--out", type=Path, default=ROOT / "models" / "pca_default.npz")
    args = parser.parse_args()

    settings = Settings(base_dir=ROOT)
    embedder = Embedder.imagenet(settings, None)
    with tempfile.TemporaryDirectory() as tmp:
        videos = [
            make_episode(Path(tmp) / f"synthetic_{i}.mp4", seed=1000 + i, duration=30) for i in range(args.synthetic)
        ]
        for folder in args.videos:
            videos += sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS)
        features = sample_video_features(embedder, videos, settings, args.per_video)
    pca = PcaModel.fit(features, args.dim)
    pca.save(args.out)
    print(f"fitted {pca.dim}-d PCA on {len(features)} frames of {len(videos)} videos -> {args.out}")


if __name__ == "__main__":
    main()
