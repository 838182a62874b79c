"""Query images: decoding limits and errors, finding the picture inside borders."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from animeback.errors import BadImageError, ImageTooLargeError
from animeback.imaging import Box, content_box, decode_query_image, find_window, is_uninformative

LIMITS = dict(max_bytes=25 << 20, max_pixels=40_000_000, min_side=16)


def _encode(array: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, fmt, **kw)
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (no pixel data worth decoding)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP"])
def test_formats_decode_to_rgb(fmt):
    image = np.random.default_rng(1).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    rgb = decode_query_image(_encode(image, fmt), **LIMITS)
    assert rgb.shape == (40, 60, 3) and rgb.dtype == np.uint8


@pytest.mark.parametrize("data,error,message", [
    (b"", BadImageError, "the image is empty"),
    (b"hello, this is text", BadImageError, "not an image"),
    (_png_header_only(1, 1), BadImageError, "1x1 pixels; at least 16 px"),
    (_png_header_only(20000, 20000), ImageTooLargeError, "20000x20000 pixels; the limit"),
])
def test_bad_queries_get_clear_errors(data, error, message):
    with pytest.raises(error) as err:
        decode_query_image(data, **LIMITS)
    assert message in err.value.message


def test_truncated_image_is_rejected():
    data = _encode(np.random.default_rng(2).integers(0, 255, (200, 300, 3), dtype=np.uint8), "PNG")
    with pytest.raises(BadImageError, match="truncated or corrupt"):
        decode_query_image(data[: len(data) // 2], **LIMITS)


def test_byte_limit():
    data = _encode(np.random.default_rng(4).integers(0, 255, (64, 64, 3), dtype=np.uint8), "PNG")
    with pytest.raises(ImageTooLargeError, match="bytes; the limit"):
        decode_query_image(data, max_bytes=100, max_pixels=10**9, min_side=1)


def _picture(h, w, seed=3):
    return np.random.default_rng(seed).integers(60, 255, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("pad,expected", [
    (((30, 30), (0, 0)), Box(0, 30, 320, 180)),      # letterbox
    (((0, 0), (40, 40)), Box(40, 0, 320, 180)),      # pillarbox
    (((20, 25), (35, 15)), Box(35, 20, 320, 180)),   # windowbox, uneven
])
def test_content_box_finds_the_picture(pad, expected):
    framed = np.pad(_picture(180, 320), pad + ((0, 0),))
    # JPEG noise in the bars must not hide them (q30 ringing from noise content reaches 3-4 px into a bar)
    noisy = decode_query_image(_encode(framed, "JPEG", quality=30), **LIMITS)
    box = content_box(noisy)
    assert abs(box.x - expected.x) <= 4 and abs(box.y - expected.y) <= 4
    assert abs(box.w - expected.w) <= 6 and abs(box.h - expected.h) <= 6


def test_dark_scene_is_not_cropped():
    dark = np.zeros((180, 320, 3), np.uint8)
    dark[80:100, 150:170] = 200  # a small bright object in a night scene
    assert content_box(dark) == Box(0, 0, 320, 180)
    assert content_box(np.zeros((50, 50, 3), np.uint8)) == Box(0, 0, 50, 50)


def _cartoon(h: int, w: int, seed: int = 5) -> np.ndarray:
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


@pytest.mark.parametrize("desktop", [(40, 40, 48), (200, 205, 210)])
def test_find_window_finds_the_picture_inside_player_chrome(desktop):
    picture = _cartoon(360, 640)
    screen = np.full((800, 1280, 3), desktop, np.uint8)
    x, y = 300, 150
    screen[y - 30:y, x:x + 640] = (225, 225, 228)           # title bar
    screen[y:y + 360, x:x + 640] = picture
    screen[y + 360:y + 404, x:x + 640] = (24, 24, 24)        # control bar
    screen[y + 368:y + 372, x + 10:x + 400] = (230, 60, 60)  # progress
    box = find_window(decode_query_image(_encode(screen, "JPEG", quality=85), **LIMITS))
    assert box is not None
    assert abs(box.x - x) <= 6 and abs(box.y - y) <= 6 and abs(box.w - 640) <= 10 and abs(box.h - 360) <= 10


def test_find_window_leaves_plain_pictures_alone():
    assert find_window(_cartoon(360, 640)) is None
    assert find_window(_picture(180, 320)) is None


def test_uninformative_pictures_are_recognised():
    black = np.zeros((180, 320, 3), np.uint8)
    card = black.copy()
    card[88:91, 150:162] = 255  # a speck of light on black (a star, a logo dot)
    fade = np.full((180, 320, 3), 128, np.uint8) + np.random.default_rng(1).integers(0, 4, (180, 320, 3), dtype=np.uint8)
    for blank in (black, card, fade, np.full((90, 160, 3), 255, np.uint8)):
        assert is_uninformative(blank)
    assert not is_uninformative(_cartoon(180, 320)) and not is_uninformative(_picture(180, 320))
