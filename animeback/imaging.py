"""Geometry every stage shares: boxes, the picture inside black borders, halves, and the blank-picture test."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# A pixel this dark (0..255 luma) or darker is "black" for border detection; JPEG noise stays below it.
BLACK_LEVEL = 28
# A border row/column may hold this share of non-black pixels (logos, noise) and still count as border.
BORDER_TOLERANCE = 0.02
# The width of an episode's moment track (the picture inside its black bars, grey, at full frame rate), which
# `process` writes and search decodes for a scene's exact moment: motion between neighbouring frames shows, and a
# second of frames decodes and compares in a few milliseconds.
MOMENT_WIDTH = 160


@dataclass(frozen=True)
class Box:
    """A rectangle inside an image: left, top, width, height in pixels."""

    x: int
    y: int
    w: int
    h: int

    def crop(self, image: np.ndarray) -> np.ndarray:
        return image[self.y : self.y + self.h, self.x : self.x + self.w]

    def scaled(self, factor: float) -> Box:
        """The same box in an image `factor` times as large."""
        if factor == 1.0:
            return self
        return Box(round(self.x * factor), round(self.y * factor), round(self.w * factor), round(self.h * factor))

    def as_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]


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


# A caption bar (a meme's text above or below the picture) is a band of one colour across the image with text on
# it: it starts and ends with rows nearly all of that colour (the margins around the text), every row of it is
# that colour in good part (bold letters may cover most of a row, not all of it), and some rows are not wholly
# that colour (a band with nothing on it is a letterbox bar or a flat sky).
CAPTION_EDGE_SHARE = 0.97
CAPTION_ROW_SHARE = 0.25
CAPTION_TOLERANCE = 16  # luma levels around the bar's colour (JPEG noise, antialiased letters' edges)
CAPTION_MIN_SHARE, CAPTION_MAX_SHARE = 0.04, 0.45  # of the image's height: thinner is a line, thicker a flat scene


def caption_box(rgb: np.ndarray) -> Box:
    """The picture without a caption bar across its top or bottom (both when both have one); the whole image if
    none."""
    gray = rgb if rgb.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    h, w = gray.shape
    top = _bar_rows(gray)
    bottom = _bar_rows(gray[::-1])
    if h - top - bottom < max(16, 0.5 * h):
        return Box(0, 0, w, h)  # most of the image is flat: a plain scene, not a caption over a picture
    return Box(0, top, w, h - top - bottom)


def _bar_rows(gray: np.ndarray) -> int:
    """How many rows from the top form a caption bar (0 if none)."""
    h = gray.shape[0]
    colour = int(np.median(gray[0]))
    near = np.abs(gray.astype(np.int16) - colour) <= CAPTION_TOLERANCE
    if near[0].mean() < CAPTION_EDGE_SHARE:
        return 0
    shares = near.mean(axis=1)
    run = int(np.argmax(shares < CAPTION_ROW_SHARE)) if (shares < CAPTION_ROW_SHARE).any() else h
    rows = 1 + int(np.flatnonzero(shares[:run] >= CAPTION_EDGE_SHARE)[-1])  # to the margin under the text
    lettered = bool((shares[:rows] < CAPTION_EDGE_SHARE).any())
    return rows if lettered and CAPTION_MIN_SHARE * h <= rows <= CAPTION_MAX_SHARE * h else 0


# Uninformative pictures (black, fades, one flat colour) look alike across every video: a match on one says
# nothing. A picture is uninformative when all but a speck of it is one flat tone. Sparse pictures (a small
# silhouette, a few cells on a field) stay informative: they are found again reliably (benchmarks/README.md).
FLAT_TOLERANCE = 12  # luma levels around the dominant tone that still count as "the same tone"
FLAT_SHARE = 0.997


def informative_share(rgb: np.ndarray) -> float:
    """Share of a picture (on a 64x64 thumbnail) that differs from its dominant flat tone: 0 for a blank frame."""
    gray = rgb if rgb.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    thumb = cv2.resize(gray, (64, 64), interpolation=cv2.INTER_AREA).astype(np.int16)
    dominant = int(np.argmax(np.bincount(thumb.ravel(), minlength=256)))
    return float(np.mean(np.abs(thumb - dominant) > FLAT_TOLERANCE))


def is_uninformative(rgb: np.ndarray) -> bool:
    """Whether a picture is one flat tone but for a speck: black, white, a fade, a blank card."""
    return informative_share(rgb) < 1 - FLAT_SHARE


def is_cropped(box: Box, shape: tuple[int, ...], min_share: float = 0.02) -> bool:
    """Whether a box removes a noticeable margin (at least min_share of a side) from an image."""
    h, w = shape[:2]
    return box.w < w * (1 - min_share) or box.h < h * (1 - min_share)


HALF_REGIONS = ("left", "right", "top", "bottom")  # region codes 1-4 of the entries features.half_frames adds


def halves(rgb: np.ndarray) -> list[np.ndarray]:
    """The halves of an image, in HALF_REGIONS order (views, not copies)."""
    h, w = rgb.shape[:2]
    return [rgb[:, : w // 2], rgb[:, w // 2 :], rgb[: h // 2], rgb[h // 2 :]]


def boxes_differ(a: Box, b: Box, share: float = 0.02) -> bool:
    """Whether two boxes differ by more than `share` of the larger one's longer side on any edge."""
    tolerance = share * max(a.w, a.h, b.w, b.h)
    return any(abs(p - q) > tolerance for p, q in zip(a.as_list(), b.as_list()))
