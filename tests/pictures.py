"""Test pictures drawn in numpy (noise, a cartoon of flat areas with hard outlines) and encoded as files."""

import io

import numpy as np
from PIL import Image

# The default search limits, as decode_query_image's keyword arguments.
LIMITS = dict(max_bytes=25 << 20, max_pixels=40_000_000, min_side=16)


def encode(array: np.ndarray, fmt: str, **kw) -> bytes:
    """An image encoded in a file format (JPEG, PNG, ...), as a user would upload it."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, fmt, **kw)
    return buf.getvalue()


def noise_picture(h, w, seed=3):
    return np.random.default_rng(seed).integers(60, 255, (h, w, 3), dtype=np.uint8)


def cartoon(h: int, w: int, seed: int = 5) -> np.ndarray:
    """A picture with flat areas and hard outlines, like an animation frame."""
    import cv2

    rng = np.random.default_rng(seed)
    out = np.full((h, w, 3), rng.integers(80, 200, 3), np.uint8)
    for _ in range(12):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.circle(out, (x, y), int(rng.integers(10, h // 3)), colour, -1)
        cv2.circle(out, (x, y), int(rng.integers(10, h // 3)), (20, 20, 20), 2)
    return out
