"""Model input: the pixels a query or a sampled frame becomes before the CNN sees it."""

from __future__ import annotations

import cv2
import numpy as np

from .mobilenet import INPUT_SIZE


def to_model_input(rgb: np.ndarray) -> np.ndarray:
    """Squash an RGB image to the CNN's square input with area averaging (as the indexer's ffmpeg does)."""
    # One axis at a time: a small query (320x180) shrinks in width but grows in height, and each direction
    # wants its own filter (area averaging to shrink without aliasing, linear to grow).
    out = np.ascontiguousarray(rgb)
    height, width = out.shape[:2]
    if width != INPUT_SIZE:
        out = cv2.resize(
            out, (INPUT_SIZE, height), interpolation=cv2.INTER_AREA if width > INPUT_SIZE else cv2.INTER_LINEAR
        )
    if height != INPUT_SIZE:
        out = cv2.resize(
            out, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA if height > INPUT_SIZE else cv2.INTER_LINEAR
        )
    return out
