"""Query decoding: formats, size limits and clear errors for what is not an image."""

import struct
import zlib

import numpy as np
import pytest

from animeback.errors import BadImageError, ImageTooLargeError
from animeback.query.decode import decode_query_image
from tests.pictures import LIMITS, encode


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (no pixel data worth decoding)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP"])
def test_formats_decode_to_rgb(fmt):
    image = np.random.default_rng(1).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    rgb = decode_query_image(encode(image, fmt), **LIMITS)
    assert rgb.shape == (40, 60, 3) and rgb.dtype == np.uint8


@pytest.mark.parametrize(
    "data,error,message",
    [
        (b"", BadImageError, "the image is empty"),
        (b"hello, this is text", BadImageError, "not an image"),
        (_png_header_only(1, 1), BadImageError, "1x1 pixels; at least 16 px"),
        (_png_header_only(20000, 20000), ImageTooLargeError, "20000x20000 pixels; the limit"),
    ],
)
def test_bad_queries_get_clear_errors(data, error, message):
    with pytest.raises(error) as err:
        decode_query_image(data, **LIMITS)
    assert message in err.value.message


def test_truncated_image_is_rejected():
    data = encode(np.random.default_rng(2).integers(0, 255, (200, 300, 3), dtype=np.uint8), "PNG")
    with pytest.raises(BadImageError, match="truncated or corrupt"):
        decode_query_image(data[: len(data) // 2], **LIMITS)


def test_byte_limit():
    data = encode(np.random.default_rng(4).integers(0, 255, (64, 64, 3), dtype=np.uint8), "PNG")
    with pytest.raises(ImageTooLargeError, match="bytes; the limit"):
        decode_query_image(data, max_bytes=100, max_pixels=10**9, min_side=1)
