"""Query decoding: bytes from an upload or a URL to RGB pixels, with the size limits checked before decoding."""

from __future__ import annotations

import contextlib
import io
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..config import SearchSettings
from ..errors import BadImageError, ImageTooLargeError

ALLOWED_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "MPO"}


@dataclass(frozen=True)
class QueryImage:
    """A decoded query: its RGB pixels (at most MAX_DECODED_SIDE a side) and the size it was sent at."""

    rgb: np.ndarray
    width: int
    height: int

    @property
    def scale(self) -> float:
        """Query pixels per decoded pixel (1.0 unless the query was shrunk on decoding)."""
        return self.width / self.rgb.shape[1]


def decode_query_image(data: bytes, max_bytes: int, max_pixels: int, min_side: int) -> np.ndarray:
    """The RGB pixels of a query image (decode_query_file without the size it was sent at)."""
    return decode_query_file(data, max_bytes, max_pixels, min_side).rgb


def decode_query_file(data: bytes, max_bytes: int, max_pixels: int, min_side: int) -> QueryImage:
    """Decode a query image (JPEG, PNG, WebP, GIF's first frame, BMP) to RGB, enforcing size limits; a picture
    larger than MAX_DECODED_SIDE comes back shrunk to it."""
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
    except Image.DecompressionBombError:  # beyond PIL's own ceiling, which config.py keeps above ours
        width, height = _announced_size(data)
        raise ImageTooLargeError(f"the image is {width}x{height} pixels; the limit is {max_pixels} pixels") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise BadImageError("the file is not an image AnimeBack can read (JPEG, PNG, WebP, GIF or BMP)") from None
    if fmt not in ALLOWED_FORMATS:
        raise BadImageError(f"unsupported image format {fmt}; use JPEG, PNG, WebP, GIF or BMP")
    if width * height > max_pixels:
        raise ImageTooLargeError(f"the image is {width}x{height} pixels; the limit is {max_pixels} pixels")
    if min(width, height) < min_side:
        raise BadImageError(f"the image is {width}x{height} pixels; at least {min_side} px per side is needed")
    try:
        with warnings.catch_warnings(), _decode_slot(width * height):
            warnings.simplefilter("ignore")
            rgb = _decoded_rgb(image)
    except Image.DecompressionBombError:  # a frame larger than the canvas its header announced
        raise ImageTooLargeError(f"the image has more than {max_pixels} pixels, the limit") from None
    except (OSError, ValueError, SyntaxError, EOFError):
        raise BadImageError("the image is truncated or corrupt") from None
    return QueryImage(rgb, width, height)


# Search needs no more detail than this: the CNN sees 224 px, and windows and screens are found at 480 px.
MAX_DECODED_SIDE = 2048
# Decodes of more pixels than this take turns, one at a time per process, so that a burst of huge images (a
# 35-byte GIF can announce a 6000x6000 canvas) costs a worker one big decode's memory, not one per request.
BIG_DECODE_PIXELS = 8_000_000
_big_decodes = threading.BoundedSemaphore(1)


@contextlib.contextmanager
def _decode_slot(pixels: int) -> Iterator[None]:
    if pixels <= BIG_DECODE_PIXELS:
        yield
        return
    with _big_decodes:
        yield


def _decoded_rgb(image: Image.Image) -> np.ndarray:
    """The first frame as RGB, at most MAX_DECODED_SIDE on its longer side: a JPEG is decoded at a reduced scale
    (DCT scaling, PIL's draft mode); other formats are decoded once in their own mode and shrunk before the RGB
    copy is made."""
    image.seek(0)  # an animation's first frame only
    bounds = (MAX_DECODED_SIDE, MAX_DECODED_SIDE)
    if max(image.size) > MAX_DECODED_SIDE:
        if image.format in ("JPEG", "MPO"):
            image.draft(
                "RGB",
                (
                    max(1, image.width * MAX_DECODED_SIDE // max(image.size)),
                    max(1, image.height * MAX_DECODED_SIDE // max(image.size)),
                ),
            )
        # Shrunk in the image's own mode, before any RGB copy: a palette image (a GIF) by nearest pixel, which
        # costs no full-size RGB copy; at this size the difference is below what the CNN input keeps.
        image.thumbnail(bounds, Image.Resampling.BOX, reducing_gap=2.0)
    return np.asarray(image.convert("RGB"))


def _announced_size(data: bytes) -> tuple[int, int]:
    """The size an image's header announces, read by the format's PIL plugin alone (Image.open refuses to
    open an image beyond PIL's pixel ceiling, and we would rather say how big it is than change that ceiling)."""
    for fmt in ALLOWED_FORMATS & set(Image.OPEN):
        factory, accept = Image.OPEN[fmt]
        if accept is not None and not accept(data[:16]):
            continue
        try:
            return factory(io.BytesIO(data), "").size
        except Exception:
            continue
    return (0, 0)


def decode_query(limits: SearchSettings, data: bytes) -> QueryImage:
    """Decode query bytes with the configured search limits (raises BadImageError / ImageTooLargeError)."""
    return decode_query_file(data, limits.max_image_bytes, limits.max_image_pixels, limits.min_image_side)
