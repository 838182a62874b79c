"""Shared geometry: the picture inside black borders or under a caption bar, and blank pictures recognised."""

import cv2
import numpy as np
import pytest

from animeback.imaging import Box, caption_box, content_box, is_uninformative
from animeback.query.decode import decode_query_image
from tests.pictures import LIMITS, cartoon, encode, noise_picture


@pytest.mark.parametrize(
    "pad,expected",
    [
        (((30, 30), (0, 0)), Box(0, 30, 320, 180)),  # letterbox
        (((0, 0), (40, 40)), Box(40, 0, 320, 180)),  # pillarbox
        (((20, 25), (35, 15)), Box(35, 20, 320, 180)),  # windowbox, uneven
    ],
)
def test_content_box_finds_the_picture(pad, expected):
    framed = np.pad(noise_picture(180, 320), pad + ((0, 0),))
    # JPEG noise in the bars must not hide them (q30 ringing from noise content reaches 3-4 px into a bar)
    noisy = decode_query_image(encode(framed, "JPEG", quality=30), **LIMITS)
    box = content_box(noisy)
    assert abs(box.x - expected.x) <= 4 and abs(box.y - expected.y) <= 4
    assert abs(box.w - expected.w) <= 6 and abs(box.h - expected.h) <= 6


def _captioned(picture: np.ndarray, bar_h: int, text: str, colour: int = 255) -> np.ndarray:
    """A meme: a bar of one colour with a line of text in the other, above the picture."""
    bar = np.full((bar_h, picture.shape[1], 3), colour, np.uint8)
    ink = (255 - colour,) * 3
    cv2.putText(bar, text, (10, bar_h * 2 // 3), cv2.FONT_HERSHEY_DUPLEX, 0.7, ink, 2, cv2.LINE_AA)
    return np.concatenate([bar, picture])


def test_caption_box_cuts_a_meme_s_caption_bar_but_not_a_plain_band():
    picture = noise_picture(180, 320)
    top = decode_query_image(encode(_captioned(picture, 40, "WHEN THE EPISODE ENDS"), "JPEG", quality=60), **LIMITS)
    assert caption_box(top) == Box(0, 40, 320, 180)
    both = _captioned(picture, 36, "TOP TEXT", colour=0)[::-1]  # black, below (its text upside down: no matter)
    both = _captioned(np.ascontiguousarray(both), 30, "BOTTOM TEXT")
    assert caption_box(both) == Box(0, 30, 320, 180)
    # Bands with nothing on them are a letterbox's bars or a flat sky, not captions.
    assert caption_box(np.pad(picture, ((30, 30), (0, 0), (0, 0)))) == Box(0, 0, 320, 240)
    sky = picture.copy()
    sky[:50] = (90, 160, 230)
    assert caption_box(sky) == Box(0, 0, 320, 180)
    assert caption_box(picture) == Box(0, 0, 320, 180)


def test_dark_scene_is_not_cropped():
    dark = np.zeros((180, 320, 3), np.uint8)
    dark[80:100, 150:170] = 200  # a small bright object in a night scene
    assert content_box(dark) == Box(0, 0, 320, 180)
    assert content_box(np.zeros((50, 50, 3), np.uint8)) == Box(0, 0, 50, 50)


def test_uninformative_pictures_are_recognised():
    black = np.zeros((180, 320, 3), np.uint8)
    card = black.copy()
    card[88:91, 150:162] = 255  # a speck of light on black (a star, a logo dot)
    fade = np.full((180, 320, 3), 128, np.uint8) + np.random.default_rng(1).integers(
        0, 4, (180, 320, 3), dtype=np.uint8
    )
    for blank in (black, card, fade, np.full((90, 160, 3), 255, np.uint8)):
        assert is_uninformative(blank)
    assert not is_uninformative(cartoon(180, 320)) and not is_uninformative(noise_picture(180, 320))
