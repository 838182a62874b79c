"""PCA over CNN features: fitted on sampled video frames, for the shipped default or a library's own."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..config import Settings
from ..errors import AnimeBackError, MediaError
from ..index import Index
from ..ingest.library import scan_library
from ..ingest.media import FrameSampler, open_video
from ..model.embedder import TRAINED_PCA_NAME, Embedder, PcaModel

log = logging.getLogger(__name__)


def sample_video_features(
    embedder: Embedder, videos: Iterable[Path], settings: Settings, per_video: int, progress: bool = True
) -> np.ndarray:
    """L2-normalised CNN features of about `per_video` frames spread over each video."""
    feats = []
    for path in tqdm(list(videos), desc="sampling frames", unit="video", disable=not progress):
        try:
            video = open_video(path, settings.media)
            fps = min(settings.media.sample_fps, max(per_video / video.info.duration, 0.05))
            frames = [f.pixels for f in FrameSampler(video, fps, settings.media)]
        except MediaError as exc:
            log.warning("skipping %s", exc.message)
            continue
        if frames:
            feats.append(embedder.cnn_features(np.stack(frames)))
    if not feats:
        raise AnimeBackError("no frames to fit PCA on: is the library empty?")
    return np.concatenate(feats)


def train_library_pca(
    settings: Settings, dim: int = 256, samples: int = 20000, reindex: bool = True, progress: bool = True
) -> str:
    """Fit PCA on the library's frames, save it as the library's PCA and (optionally) re-index with it."""
    if settings.features.model:
        raise AnimeBackError(
            f"train-pca refits the ImageNet model's PCA, but features.model is set to "
            f"{settings.features.model}; empty it first (a trained model has its own projection)"
        )
    files = scan_library(settings.library_path).files
    if not files:
        raise AnimeBackError(f"the library {settings.library_path} has no episodes to fit PCA on")
    embedder = Embedder.imagenet(settings, None)
    per_video = max(8, samples // len(files))
    features = sample_video_features(embedder, [f.path for f in files], settings, per_video, progress)
    if len(features) < dim:
        raise AnimeBackError(f"only {len(features)} frames sampled; PCA to {dim} dimensions needs at least {dim}")
    pca = PcaModel.fit(features, dim)
    target = settings.data_path / TRAINED_PCA_NAME
    pca.save(target)
    message = f"fitted PCA {pca.dim}-d on {len(features)} frames of {len(files)} episode(s) -> {target}"
    if settings.features.pca:
        message += f" (note: features.pca={settings.features.pca} is set and takes precedence)"
    if reindex:
        from ..ingest.indexer import process_library

        embedder.use_pca(pca)
        with Index(settings, embedder) as index:
            report = process_library(index, reindex=True, progress=progress)
        message += "\n" + report.summary()
    return message
