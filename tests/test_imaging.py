"""Query images: decoding limits and errors, finding the picture inside borders, chrome or a photo."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from animeback.errors import BadImageError, ImageTooLargeError
from animeback.imaging import (Box, bounding_box, content_box, decode_query_image, find_screen, find_windows,
                               is_uninformative, unwarp, window_aspects)

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


def _in_player(picture: np.ndarray, desktop, x: int = 300, y: int = 150) -> np.ndarray:
    """A desktop screenshot (JPEG) with the picture in a player window at x, y."""
    h, w = picture.shape[:2]
    screen = np.full((800, 1280, 3), desktop, np.uint8)
    screen[y - 30:y, x:x + w] = (225, 225, 228)           # title bar
    screen[y:y + h, x:x + w] = picture
    screen[y + h:y + h + 44, x:x + w] = (24, 24, 24)       # control bar
    screen[y + h + 8:y + h + 12, x + 10:x + w // 2] = (230, 60, 60)  # progress
    return decode_query_image(_encode(screen, "JPEG", quality=85), **LIMITS)


@pytest.mark.parametrize("desktop", [(40, 40, 48), (200, 205, 210)])
def test_find_windows_finds_the_picture_inside_player_chrome(desktop):
    boxes = find_windows(_in_player(_cartoon(360, 640), desktop))
    assert boxes
    box = boxes[0]
    assert abs(box.x - 300) <= 6 and abs(box.y - 150) <= 6 and abs(box.w - 640) <= 10 and abs(box.h - 360) <= 10


def test_find_windows_knows_the_librarys_own_frame_shapes():
    screen = _in_player(_cartoon(487, 560), (40, 40, 48))  # the shape of a 314x273 GIF in the library
    assert find_windows(screen) == []  # no common video shape
    boxes = find_windows(screen, window_aspects([314 / 273, 16 / 9]))
    assert boxes
    box = boxes[0]
    assert abs(box.x - 300) <= 6 and abs(box.y - 150) <= 6 and abs(box.w - 560) <= 10 and abs(box.h - 487) <= 10


def test_find_windows_leaves_plain_pictures_alone():
    assert find_windows(_cartoon(360, 640)) == []
    assert find_windows(_picture(180, 320)) == []


def test_uninformative_pictures_are_recognised():
    black = np.zeros((180, 320, 3), np.uint8)
    card = black.copy()
    card[88:91, 150:162] = 255  # a speck of light on black (a star, a logo dot)
    fade = np.full((180, 320, 3), 128, np.uint8) + np.random.default_rng(1).integers(0, 4, (180, 320, 3), dtype=np.uint8)
    for blank in (black, card, fade, np.full((90, 160, 3), 255, np.uint8)):
        assert is_uninformative(blank)
    assert not is_uninformative(_cartoon(180, 320)) and not is_uninformative(_picture(180, 320))


def _photographed(picture: np.ndarray, corners: np.ndarray, size=(1024, 736)) -> np.ndarray:
    """A picture warped onto given corners inside a dark, slightly lit surround, as a phone photo of a screen."""
    import cv2

    h, w = picture.shape[:2]
    source = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    photo = cv2.warpPerspective(picture, cv2.getPerspectiveTransform(source, np.float32(corners)), size,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=(18, 18, 22))
    noisy = photo + np.random.default_rng(2).normal(0, 4, photo.shape)
    return decode_query_image(_encode(np.clip(noisy, 0, 255).astype(np.uint8), "JPEG", quality=70), **LIMITS)


def test_find_screen_finds_a_picture_seen_at_an_angle_and_undoes_the_perspective():
    picture = _cartoon(360, 640)
    corners = np.float32([[110, 150], [930, 100], [900, 610], [140, 640]])
    found = find_screen(_photographed(picture, corners))
    assert found is not None and np.abs(found - corners).max() <= 8
    straightened = unwarp(_photographed(picture, corners), found)
    import cv2

    # Undoing the perspective brings back the picture: closer to it than the skewed box around it.
    def error(image):
        return float(np.mean(np.abs(cv2.resize(image, (64, 36), interpolation=cv2.INTER_AREA).astype(int)
                                    - cv2.resize(picture, (64, 36), interpolation=cv2.INTER_AREA).astype(int))))
    skewed = bounding_box(found, (736, 1024)).crop(_photographed(picture, corners))
    assert error(straightened) < 0.6 * error(skewed)


def test_find_screen_leaves_upright_and_plain_pictures_alone():
    upright = np.float32([[100, 100], [900, 100], [900, 550], [100, 550]])
    assert find_screen(_photographed(_cartoon(360, 640), upright)) is None  # content_box's job
    assert find_screen(_cartoon(360, 640)) is None and find_screen(_picture(180, 320)) is None


def test_find_screen_finds_a_dark_picture_in_a_lit_room():
    picture = (_cartoon(360, 640) * 0.25).astype(np.uint8)  # a night scene
    corners = np.float32([[120, 140], [920, 110], [890, 620], [150, 630]])
    photo = _photographed(picture, corners)
    lit = photo.astype(int)
    outside = np.ones(photo.shape[:2], np.uint8)
    import cv2

    cv2.fillConvexPoly(outside, corners.astype(np.int32), 0)
    lit[outside.astype(bool)] += 150  # a bright wall around the screen
    found = find_screen(np.clip(lit, 0, 255).astype(np.uint8))
    assert found is not None and np.abs(found - corners).max() <= 8


def test_query_regions_cut_a_letterboxed_film_out_of_its_player_window():
    from animeback.search import query_regions

    film = np.pad(_cartoon(272, 640), ((44, 44), (0, 0), (0, 0)))  # 2.35:1 film in a 16:9 player
    regions = query_regions(_in_player(film, (200, 205, 210)), cut_borders=True)
    window = next(r.box for r in regions if r.name == "window")  # the likeliest window comes first
    assert abs(window.x - 300) <= 6 and abs(window.y - 194) <= 6 and abs(window.w - 640) <= 10
    assert abs(window.h - 272) <= 10
    assert regions[0].name == "full" and regions[0].box == Box(0, 0, 1280, 800)


def test_query_regions_search_the_mirror_image_too_and_nothing_else_in_a_plain_picture():
    from animeback.search import query_regions

    picture = _cartoon(360, 640)
    for cut_borders in (False, True):
        full, flipped = query_regions(picture, cut_borders)
        assert (full.name, flipped.name) == ("full", "flipped") and full.box == flipped.box == Box(0, 0, 640, 360)
        assert np.array_equal(flipped.pixels, picture[:, ::-1])
        assert [r.name for r in query_regions(picture, cut_borders, mirror=False)] == ["full"]
