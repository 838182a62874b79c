"""Query decoding: formats, size limits and clear errors for what is not an image."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

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


def _gif_with_a_huge_canvas(width: int, height: int) -> bytes:
    """35 bytes: a GIF whose canvas is width x height and whose one frame is a single pixel."""
    header = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    return header + b"," + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00;"


def test_large_queries_are_decoded_shrunk_and_say_the_size_they_were_sent_at():
    from animeback.query.decode import MAX_DECODED_SIDE, decode_query_file

    photo = encode(np.random.default_rng(4).integers(0, 255, (3000, 4000, 3), dtype=np.uint8), "JPEG", quality=80)
    query = decode_query_file(photo, **LIMITS)
    assert query.rgb.shape == (1536, MAX_DECODED_SIDE, 3) and (query.width, query.height) == (4000, 3000)
    assert query.scale == pytest.approx(4000 / MAX_DECODED_SIDE)
    bomb = decode_query_file(_gif_with_a_huge_canvas(6000, 6000), **LIMITS)
    assert bomb.rgb.shape == (MAX_DECODED_SIDE, MAX_DECODED_SIDE, 3) and bomb.width == 6000
    small = decode_query_file(encode(np.zeros((90, 160, 3), np.uint8), "PNG"), **LIMITS)
    assert small.rgb.shape == (90, 160, 3) and small.scale == 1.0


def test_only_the_first_frame_of_an_animation_is_decoded():
    frames = [Image.new("RGB", (64, 48), colour) for colour in ((250, 10, 10), (10, 250, 10), (10, 10, 250))]
    for fmt in ("GIF", "WEBP"):
        buf = io.BytesIO()
        frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
        rgb = decode_query_image(buf.getvalue(), **LIMITS)
        assert rgb.shape == (48, 64, 3) and rgb[..., 0].mean() > 200 and rgb[..., 1].mean() < 60, fmt


DECODE_BURST = """
import resource, sys, threading
from pathlib import Path
from animeback.query.decode import decode_query_image
files = [p.read_bytes() for p in sorted(Path(sys.argv[1]).iterdir())]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
threads = [threading.Thread(target=decode_query_image, args=(data, 25 << 20, 40_000_000, 16)) for data in files * 2]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


@pytest.mark.slow
def test_a_burst_of_decompression_bombs_stays_within_the_documented_memory_bound(tmp_path):
    import subprocess
    import sys

    # Just under the default pixel limit (36 MP each), in every format that can carry a huge canvas cheaply.
    (tmp_path / "canvas.gif").write_bytes(_gif_with_a_huge_canvas(6000, 6000))
    (tmp_path / "flat.png").write_bytes(encode(np.full((6000, 6000, 3), 40, np.uint8), "PNG", optimize=True))
    frames = [Image.new("RGB", (6000, 6000), colour) for colour in ((255, 0, 0), (0, 255, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    (tmp_path / "animated.webp").write_bytes(buf.getvalue())
    (tmp_path / "photo.jpg").write_bytes(encode(np.full((6000, 6000, 3), 90, np.uint8), "JPEG", quality=80))
    del frames
    out = subprocess.run(
        [sys.executable, "-c", DECODE_BURST, str(tmp_path)], capture_output=True, text=True, check=True, timeout=300
    )
    grown_mib = int(out.stdout.strip())
    # README "Memory": a worker decodes one image over 8 MP at a time; the worst, an animated WebP, needs about
    # 15 bytes per pixel (600 MiB at the default 40 MP). Eight at once must not add up.
    assert grown_mib <= 700, f"a burst of 8 bombs grew the process by {grown_mib} MiB"
