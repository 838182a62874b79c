"""Query regions: the picture inside a player window or page, or seen at an angle in a photo of a screen."""

import numpy as np
import pytest

from animeback.imaging import Box
from animeback.query.decode import decode_query_image
from animeback.query.regions import bounding_box, find_screen, find_windows, unwarp, window_aspects
from tests.pictures import LIMITS, cartoon, encode, noise_picture


def _in_player(picture: np.ndarray, desktop, x: int = 300, y: int = 150) -> np.ndarray:
    """A desktop screenshot (JPEG) with the picture in a player window at x, y."""
    h, w = picture.shape[:2]
    screen = np.full((800, 1280, 3), desktop, np.uint8)
    screen[y - 30 : y, x : x + w] = (225, 225, 228)  # title bar
    screen[y : y + h, x : x + w] = picture
    screen[y + h : y + h + 44, x : x + w] = (24, 24, 24)  # control bar
    screen[y + h + 8 : y + h + 12, x + 10 : x + w // 2] = (230, 60, 60)  # progress
    return decode_query_image(encode(screen, "JPEG", quality=85), **LIMITS)


@pytest.mark.parametrize("desktop", [(40, 40, 48), (200, 205, 210)])
def test_find_windows_finds_the_picture_inside_player_chrome(desktop):
    boxes = find_windows(_in_player(cartoon(360, 640), desktop))
    assert boxes
    box = boxes[0]
    assert abs(box.x - 300) <= 6 and abs(box.y - 150) <= 6 and abs(box.w - 640) <= 10 and abs(box.h - 360) <= 10


def test_find_windows_knows_the_librarys_own_frame_shapes():
    screen = _in_player(cartoon(487, 560), (40, 40, 48))  # the shape of a 314x273 GIF in the library
    assert find_windows(screen) == []  # no common video shape
    boxes = find_windows(screen, window_aspects([314 / 273, 16 / 9]))
    assert boxes
    box = boxes[0]
    assert abs(box.x - 300) <= 6 and abs(box.y - 150) <= 6 and abs(box.w - 560) <= 10 and abs(box.h - 487) <= 10


def test_find_windows_leaves_plain_pictures_alone():
    assert find_windows(cartoon(360, 640)) == []
    assert find_windows(noise_picture(180, 320)) == []


def _photographed(picture: np.ndarray, corners: np.ndarray, size=(1024, 736)) -> np.ndarray:
    """A picture warped onto given corners inside a dark, slightly lit surround, as a phone photo of a screen."""
    import cv2

    h, w = picture.shape[:2]
    source = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    photo = cv2.warpPerspective(
        picture,
        cv2.getPerspectiveTransform(source, np.float32(corners)),
        size,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(18, 18, 22),
    )
    noisy = photo + np.random.default_rng(2).normal(0, 4, photo.shape)
    return decode_query_image(encode(np.clip(noisy, 0, 255).astype(np.uint8), "JPEG", quality=70), **LIMITS)


def test_find_screen_finds_a_picture_seen_at_an_angle_and_undoes_the_perspective():
    picture = cartoon(360, 640)
    corners = np.float32([[110, 150], [930, 100], [900, 610], [140, 640]])
    found = find_screen(_photographed(picture, corners))
    assert found is not None and np.abs(found - corners).max() <= 8
    straightened = unwarp(_photographed(picture, corners), found)
    import cv2

    # Undoing the perspective brings back the picture: closer to it than the skewed box around it.
    def error(image):
        return float(
            np.mean(
                np.abs(
                    cv2.resize(image, (64, 36), interpolation=cv2.INTER_AREA).astype(int)
                    - cv2.resize(picture, (64, 36), interpolation=cv2.INTER_AREA).astype(int)
                )
            )
        )

    skewed = bounding_box(found, (736, 1024)).crop(_photographed(picture, corners))
    assert error(straightened) < 0.6 * error(skewed)


def test_find_screen_leaves_upright_and_plain_pictures_alone():
    upright = np.float32([[100, 100], [900, 100], [900, 550], [100, 550]])
    assert find_screen(_photographed(cartoon(360, 640), upright)) is None  # content_box's job
    assert find_screen(cartoon(360, 640)) is None and find_screen(noise_picture(180, 320)) is None


def test_find_screen_finds_a_dark_picture_in_a_lit_room():
    picture = (cartoon(360, 640) * 0.25).astype(np.uint8)  # a night scene
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
    from animeback.query.regions import query_regions

    film = np.pad(cartoon(272, 640), ((44, 44), (0, 0), (0, 0)))  # 2.35:1 film in a 16:9 player
    regions = query_regions(_in_player(film, (200, 205, 210)), cut_borders=True)
    window = next(r.box for r in regions if r.name == "window")  # the likeliest window comes first
    assert abs(window.x - 300) <= 6 and abs(window.y - 194) <= 6 and abs(window.w - 640) <= 10
    assert abs(window.h - 272) <= 10
    assert regions[0].name == "full" and regions[0].box == Box(0, 0, 1280, 800)


def test_query_regions_search_the_mirror_image_too_and_nothing_else_in_a_plain_picture():
    from animeback.query.regions import query_regions

    picture = cartoon(360, 640)
    for cut_borders in (False, True):
        full, flipped = query_regions(picture, cut_borders)
        assert (full.name, flipped.name) == ("full", "flipped") and full.box == flipped.box == Box(0, 0, 640, 360)
        assert np.array_equal(flipped.pixels, picture[:, ::-1])
        assert [r.name for r in query_regions(picture, cut_borders, mirror=False)] == ["full"]
