"""Query decoding: bytes from an upload or a URL to RGB pixels, with the size limits checked before decoding."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..config import SearchSettings
from ..errors import BadImageError, ImageTooLargeError

ALLOWED_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "MPO"}


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
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image.seek(0)
            rgb = np.asarray(image.convert("RGB"))
    except Image.DecompressionBombError:  # a frame larger than the canvas its header announced
        raise ImageTooLargeError(f"the image has more than {max_pixels} pixels, the limit") from None
    except (OSError, ValueError, SyntaxError, EOFError):
        raise BadImageError("the image is truncated or corrupt") from None
    return rgb


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


def decode_query(limits: SearchSettings, data: bytes) -> np.ndarray:
    """Decode query bytes with the configured search limits (raises BadImageError / ImageTooLargeError)."""
    return decode_query_image(data, limits.max_image_bytes, limits.max_image_pixels, limits.min_image_side)
