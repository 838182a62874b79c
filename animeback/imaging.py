"""Images: decode queries safely, find the picture inside black borders, prepare CNN input."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import BadImageError, ImageTooLargeError
from .mobilenet import INPUT_SIZE

ALLOWED_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "MPO"}
# A pixel this dark (0..255 luma) or darker is "black" for border detection; JPEG noise stays below it.
BLACK_LEVEL = 28
# A border row/column may hold this share of non-black pixels (logos, noise) and still count as border.
BORDER_TOLERANCE = 0.02


@dataclass(frozen=True)
class Box:
    """A rectangle inside an image: left, top, width, height in pixels."""

    x: int
    y: int
    w: int
    h: int

    def crop(self, image: np.ndarray) -> np.ndarray:
        return image[self.y:self.y + self.h, self.x:self.x + self.w]

    def as_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]


def decode_query_image(data: bytes, max_bytes: int, max_pixels: int, min_side: int) -> np.ndarray:
    """Decode a query image (JPEG, PNG, WebP, GIF's first frame, BMP) to RGB, enforcing size limits."""
    if not data:
        raise BadImageError("the image is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ImageTooLargeError(f"the image is {len(data)} bytes; the limit is {max_bytes} bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data))  # reads the header only
            fmt = image.format
            width, height = image.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise BadImageError("the file is not an image AnimeBack can read (JPEG, PNG, WebP, GIF or BMP)") from None
    if fmt not in ALLOWED_FORMATS:
        raise BadImageError(f"unsupported image format {fmt}; use JPEG, PNG, WebP, GIF or BMP")
    if width * height > max_pixels:
        raise ImageTooLargeError(f"the image is {width}x{height} pixels; the limit is {max_pixels} pixels")
    if min(width, height) < min_side:
        raise BadImageError(f"the image is {width}x{height} pixels; at least {min_side} px per side is needed")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Image.MAX_IMAGE_PIXELS = None  # our own limit above already applies
            image.seek(0)
            rgb = np.asarray(image.convert("RGB"))
    except (OSError, ValueError, SyntaxError, EOFError):
        raise BadImageError("the image is truncated or corrupt") from None
    return rgb


def content_box(rgb: np.ndarray) -> Box:
    """The part of an image inside black borders (letterbox, pillarbox or both); the whole image if none."""
    gray = rgb if rgb.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    bright = gray > BLACK_LEVEL
    rows = bright.mean(axis=1) > BORDER_TOLERANCE
    cols = bright.mean(axis=0) > BORDER_TOLERANCE
    h, w = gray.shape
    if not rows.any() or not cols.any():
        return Box(0, 0, w, h)  # an all-black image has no picture to find
    top, bottom = int(np.argmax(rows)), int(h - np.argmax(rows[::-1]))
    left, right = int(np.argmax(cols)), int(w - np.argmax(cols[::-1]))
    box = Box(left, top, right - left, bottom - top)
    # A picture this small relative to the image is a dark scene, not a bordered frame.
    if box.w < 0.25 * w or box.h < 0.25 * h:
        return Box(0, 0, w, h)
    return box


def is_cropped(box: Box, shape: tuple[int, ...], min_share: float = 0.02) -> bool:
    """Whether a box removes a noticeable margin (at least min_share of a side) from an image."""
    h, w = shape[:2]
    return box.w < w * (1 - min_share) or box.h < h * (1 - min_share)


def to_model_input(rgb: np.ndarray) -> np.ndarray:
    """Squash an RGB image to the CNN's square input with area averaging (as the indexer's ffmpeg does)."""
    # One axis at a time: a small query (320x180) shrinks in width but grows in height, and each direction
    # wants its own filter (area averaging to shrink without aliasing, linear to grow).
    out = np.ascontiguousarray(rgb)
    height, width = out.shape[:2]
    if width != INPUT_SIZE:
        out = cv2.resize(out, (INPUT_SIZE, height), interpolation=cv2.INTER_AREA if width > INPUT_SIZE else cv2.INTER_LINEAR)
    if height != INPUT_SIZE:
        out = cv2.resize(out, (INPUT_SIZE, INPUT_SIZE),
                         interpolation=cv2.INTER_AREA if height > INPUT_SIZE else cv2.INTER_LINEAR)
    return out
