"""Training views: a frame as users post it (crops, flips, text, resizes, JPEG, tints, borders, UI, photos)."""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

_WORDS = (
    "no way",
    "wait",
    "this is it",
    "run!",
    "who are you",
    "let's go",
    "I knew it",
    "really?",
    "sorry",
    "thank you",
    "what happened",
    "over there",
    "hurry up",
    "it can't be",
    "stop",
    "good morning",
)


def _text(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Subtitles near the bottom, or a caption or watermark anywhere, in random size and colours."""
    out = np.ascontiguousarray(rgb.copy())
    h, w = out.shape[:2]
    text = " ".join(rng.choice(_WORDS, int(rng.integers(1, 4))))
    scale = w / rng.uniform(400, 1000)
    thick = max(1, int(round(scale * rng.uniform(1.5, 3))))
    size, _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    if rng.random() < 0.6:
        org = ((w - size[0]) // 2, int(h * rng.uniform(0.85, 0.97)))
    else:
        org = (int(rng.integers(0, max(1, w - size[0]))), int(rng.integers(size[1] + 1, h)))
    fill = tuple(int(c) for c in rng.integers(0, 256, 3)) if rng.random() < 0.3 else (255, 255, 255)
    cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick * 3, cv2.LINE_AA)
    cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, fill, thick, cv2.LINE_AA)
    return out


def _crop(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A crop of any size from a quarter of the frame up, with any change of aspect up to halving a side."""
    h, w = rgb.shape[:2]
    if rng.random() < 0.25:  # exactly one half: left, right, top or bottom
        side = int(rng.integers(4))
        return [rgb[:, : w // 2], rgb[:, w // 2 :], rgb[: h // 2], rgb[h // 2 :]][side]
    area = rng.uniform(0.25, 1.0)
    aspect = np.exp(rng.uniform(np.log(0.45), np.log(2.2)))
    cw = int(np.clip(w * np.sqrt(area * aspect), 16, w))
    ch = int(np.clip(h * np.sqrt(area / aspect), 16, h))
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return rgb[y : y + ch, x : x + cw]


def _colour(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Colour cast, gamma, brightness, contrast and saturation changes."""
    x = rgb.astype(np.float32) / 255.0
    x = np.clip(x * rng.uniform(0.75, 1.25, 3), 0, 1) ** rng.uniform(0.6, 1.6)
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * rng.uniform(0.5, 1.5)
    x = (x - 0.5) * rng.uniform(0.7, 1.3) + 0.5 + rng.uniform(-0.1, 0.1)
    return (np.clip(x, 0, 1) * 255).astype(np.uint8)


def _resize(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = rgb.shape[:2]
    width = int(rng.integers(120, 640))
    return cv2.resize(rgb, (width, max(16, round(h * width / w))), interpolation=cv2.INTER_AREA)


def _jpeg(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=int(rng.integers(15, 90)))
    return np.asarray(Image.open(buf).convert("RGB"))


def _blur_noise(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = cv2.GaussianBlur(rgb, (0, 0), rng.uniform(0.5, 2.0)) if rng.random() < 0.6 else rgb
    if rng.random() < 0.6:
        out = np.clip(out + rng.normal(0, rng.uniform(2, 10), out.shape), 0, 255).astype(np.uint8)
    return out


def _borders(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Letterbox, pillarbox or windowbox bars, black or a flat colour."""
    h, w = rgb.shape[:2]
    colour = (0, 0, 0) if rng.random() < 0.6 else tuple(int(c) for c in rng.integers(0, 256, 3))
    top, left = (int(h * rng.uniform(0, 0.3)), int(w * rng.uniform(0, 0.3)))
    bottom, right = (
        top if rng.random() < 0.7 else int(h * rng.uniform(0, 0.3)),
        left if rng.random() < 0.7 else int(w * rng.uniform(0, 0.3)),
    )
    if rng.random() < 0.5:
        top = bottom = 0
    elif rng.random() < 0.5:
        left = right = 0
    return cv2.copyMakeBorder(rgb, top, bottom, left, right, cv2.BORDER_CONSTANT, value=colour)


def _ui(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The frame inside application chrome: bars above and below, side panels, a desktop or page around it."""
    h, w = rgb.shape[:2]
    scale = rng.uniform(0.45, 0.9)
    fw, fh = max(16, int(w * scale)), max(16, int(h * scale))
    frame = cv2.resize(rgb, (fw, fh), interpolation=cv2.INTER_AREA)
    cw, ch = int(fw / rng.uniform(0.5, 0.95)), int(fh / rng.uniform(0.55, 0.95))
    canvas = np.empty((ch, cw, 3), np.uint8)
    canvas[:] = rng.integers(0, 256, 3)
    x, y = int(rng.integers(0, cw - fw + 1)), int(rng.integers(0, ch - fh + 1))
    for _ in range(int(rng.integers(1, 5))):  # title bars, control bars, panels, thumbnails
        bx, by = int(rng.integers(0, cw)), int(rng.integers(0, ch))
        bw, bh = int(rng.integers(10, cw)), int(rng.integers(4, max(5, ch // 4)))
        canvas[by : by + bh, bx : bx + bw] = rng.integers(0, 256, 3)
        if rng.random() < 0.5:
            cv2.putText(
                canvas,
                str(rng.choice(_WORDS)),
                (bx + 4, by + bh - 2),
                cv2.FONT_HERSHEY_SIMPLEX,
                rng.uniform(0.3, 0.8),
                tuple(int(c) for c in rng.integers(0, 256, 3)),
                1,
                cv2.LINE_AA,
            )
    canvas[y : y + fh, x : x + fw] = frame
    if rng.random() < 0.5:  # a progress bar or buttons over the bottom of the picture
        py = y + fh - int(rng.integers(4, max(5, fh // 8)))
        canvas[py : py + 4, x + 5 : x + fw - 5] = rng.integers(0, 256, 3)
    return canvas


def _photo(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A camera photo of a screen: perspective, a dark surround, uneven light."""
    h, w = rgb.shape[:2]
    margin = rng.uniform(0.03, 0.2)
    out_w, out_h = int(w * (1 + 2 * margin)), int(h * (1 + 2 * margin))
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    dst = (
        src
        + np.array([w * margin, h * margin], np.float32)
        + rng.uniform(-0.07, 0.07, (4, 2)).astype(np.float32) * [w, h]
    )
    surround = tuple(int(c) for c in rng.integers(0, 60, 3))
    warped = cv2.warpPerspective(
        rgb,
        cv2.getPerspectiveTransform(src, dst.astype(np.float32)),
        (out_w, out_h),
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=surround,
    )
    yy, xx = np.mgrid[0:out_h, 0:out_w].astype(np.float32)
    cx, cy = rng.uniform(0, out_w), rng.uniform(0, out_h)
    light = rng.uniform(1.0, 1.25) - rng.uniform(0.1, 0.6) * np.hypot((xx - cx) / out_w, (yy - cy) / out_h)
    return np.clip(warped * light[..., None], 0, 255).astype(np.uint8)


def random_view(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random distortion chain of a frame, in the order a screenshot goes through them."""
    out = rgb
    if rng.random() < 0.6:
        out = _crop(out, rng)
    if rng.random() < 0.5:
        out = np.ascontiguousarray(out[:, ::-1])
    if rng.random() < 0.4:
        out = _text(out, rng)
    if rng.random() < 0.4:
        out = _colour(out, rng)
    surround = rng.random()
    if surround < 0.15:
        out = _borders(out, rng)
    elif surround < 0.3:
        out = _ui(out, rng)
    elif surround < 0.4:
        out = _photo(out, rng)
    if rng.random() < 0.3:
        out = _blur_noise(out, rng)
    if rng.random() < 0.4:
        out = _resize(out, rng)
    if rng.random() < 0.5:
        out = _jpeg(out, rng)
    return out
