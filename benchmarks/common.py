"""Helpers shared by the benchmarks: the shared clips, a temporary installation, query distortions."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from animeback.config import Settings, updated

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
CLIPS = ROOT.parent / "shared" / "data" / "clips"


def shared_clips() -> list[Path]:
    """The shared real clips, or exit with a clear message when the folder is absent."""
    if not CLIPS.is_dir():
        sys.exit(f"benchmark needs the shared clips in {CLIPS}; not found")
    return sorted(p for p in CLIPS.iterdir() if p.is_file())


def settings_for(workdir: Path, library: Path, **overrides) -> Settings:
    """Settings of a throw-away installation under workdir; overrides as 'section.key': value."""
    changes: dict = {"library_dir": str(library), "data_dir": str(workdir / "data")}
    for key, value in overrides.items():
        section, _, name = key.rpartition(".")
        if section:
            changes.setdefault(section, {})[name] = value
        else:
            changes[name] = value
    return updated(Settings(base_dir=workdir), **changes)


def setting_change(text: str) -> tuple[str, object]:
    """A `section.key=VALUE` command-line argument (VALUE in JSON) as (key, value), for argparse's `type`."""
    key, sep, value = text.partition("=")
    try:
        if not (sep and key):
            raise ValueError(text)
        return key, json.loads(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected section.key=VALUE (VALUE in JSON), got {text!r}") from None


def add_setting_option(parser, flag: str, help: str) -> None:
    """A repeatable `flag section.key=VALUE` option (a setting changed for a configuration measured beside the
    default)."""
    parser.add_argument(flag, action="append", default=[], type=setting_change, metavar="KEY=VALUE", help=help)


def free_port() -> int:
    """A TCP port free on loopback now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post_search(port: int, body: bytes, timeout: float = 300) -> tuple[int, float, dict]:
    """POST a JPEG to a local server's /search?cutBorders: its status, the milliseconds it took, its JSON body
    ({} when the body is not JSON)."""
    import http.client

    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    connection.request("POST", "/search?cutBorders", body=body, headers={"Content-Type": "image/jpeg"})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    ms = (time.perf_counter() - started) * 1000
    try:
        return response.status, ms, json.loads(data)
    except ValueError:
        return response.status, ms, {}


def link_library(library: Path, clips: list[Path], series: str = "clips") -> None:
    """A library folder whose one series links to the given clips."""
    folder = library / series
    folder.mkdir(parents=True, exist_ok=True)
    for clip in clips:
        target = folder / clip.name
        if not target.exists():
            target.symlink_to(clip)


def grab_rgb(video: Path, at: float) -> np.ndarray:
    """The frame shown at `at` seconds, full resolution, as RGB (decoded accurately, PNG through a pipe)."""
    out = subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-ss",
            f"{at:.3f}",
            "-i",
            str(video),
            "-frames:v",
            "1",
            "-f",
            "image2pipe",
            "-vcodec",
            "png",
            "-",
        ],
        capture_output=True,
        check=True,
    ).stdout
    return np.asarray(Image.open(io.BytesIO(out)).convert("RGB"))


def _jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


_WORDS = ["I told you", "we have to go", "right now!", "what is this", "look out", "never again", "wait for me"]


def _subtitle(rgb: np.ndarray, rng: np.random.Generator, lines: int = 1) -> np.ndarray:
    """Subtitles burnt in at the bottom: white text with a black outline, `lines` lines of two phrases."""
    out = rgb.copy()
    h, w = out.shape[:2]
    scale = w / 640
    for line in range(lines):
        text = " ".join(rng.choice(_WORDS, 2))
        size, _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, max(1, int(2 * scale)))
        org = ((w - size[0]) // 2, int(h * 0.92 - (lines - 1 - line) * size[1] * 1.8))
        cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), max(2, int(6 * scale)), cv2.LINE_AA)
        white = (255, 255, 255)
        cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, white, max(1, int(2 * scale)), cv2.LINE_AA)
    return out


def _combo(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The screenshot people actually post: 10% cropped, two lines of subtitles, shrunk to half, JPEG q40."""
    out = _subtitle(_crop(rgb, 0.9, rng), rng, lines=2)
    return _jpeg(_resize_width(out, max(16, out.shape[1] // 2)), 40)


def _rotate(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A mild rotation (1-3 degrees either way) about the centre, the corners left black, the size kept."""
    h, w = rgb.shape[:2]
    angle = float(rng.uniform(1.0, 3.0) * rng.choice([-1, 1]))
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    return cv2.warpAffine(rgb, matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))


def _caption_bar(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A meme: a white bar above the picture (a fifth of its height) with a line of black text."""
    h, w = rgb.shape[:2]
    bar = np.full((max(8, h // 5), w, 3), 255, np.uint8)
    text = " ".join(rng.choice(_WORDS, 2)).upper()
    scale = w / 700
    size, _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_DUPLEX, scale, max(1, int(2 * scale)))
    org = ((w - size[0]) // 2, (bar.shape[0] + size[1]) // 2)
    cv2.putText(bar, text, org, cv2.FONT_HERSHEY_DUPLEX, scale, (0, 0, 0), max(1, int(2 * scale)), cv2.LINE_AA)
    return np.concatenate([bar, rgb])


def _letterbox_4_3(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    target_h = int(round(w * 3 / 4))
    if target_h <= h:  # already 4:3 or taller: pillarbox to 16:9 instead, the same idea sideways
        target_w = int(round(h * 16 / 9))
        pad = target_w - w
        return np.pad(rgb, ((0, 0), (pad // 2, pad - pad // 2), (0, 0)))
    pad = target_h - h
    return np.pad(rgb, ((pad // 2, pad - pad // 2), (0, 0), (0, 0)))


def _crop(rgb: np.ndarray, keep: float, rng: np.random.Generator) -> np.ndarray:
    h, w = rgb.shape[:2]
    ch, cw = int(h * keep), int(w * keep)
    y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    return rgb[y : y + ch, x : x + cw]


def _resize_width(rgb: np.ndarray, width: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    return cv2.resize(rgb, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)


def _pillarbox(rgb: np.ndarray) -> np.ndarray:
    """Black bars left and right: the frame inside a 21:9 canvas."""
    h, w = rgb.shape[:2]
    pad = max(0, int(round(h * 21 / 9)) - w)
    return np.pad(rgb, ((0, 0), (pad // 2, pad - pad // 2), (0, 0)))


def _tint(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A colour cast and a gamma change, as filters and badly calibrated captures give."""
    gains = rng.uniform(0.8, 1.2, 3)
    gamma = rng.uniform(0.7, 1.4)
    out = 255.0 * (np.clip(rgb / 255.0 * gains, 0, 1) ** gamma)
    return out.astype(np.uint8)


def _crop_area(rgb: np.ndarray, area: float, rng: np.random.Generator) -> np.ndarray:
    """A random crop keeping `area` of the frame (same aspect ratio)."""
    return _crop(rgb, float(np.sqrt(area)), rng)


def _half(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One half of the frame: left, right, top or bottom."""
    h, w = rgb.shape[:2]
    side = int(rng.integers(4))
    return [rgb[:, : w // 2], rgb[:, w // 2 :], rgb[: h // 2], rgb[h // 2 :]][side]


def _player_window(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A desktop screenshot: the frame in a player window (title bar, control bar) on a desktop."""
    canvas_w, canvas_h = 1280, 800
    desktop = np.full((canvas_h, canvas_w, 3), rng.integers(30, 90, 3), dtype=np.uint8)
    title_h, controls_h = 30, 44
    video_w = int(canvas_w * rng.uniform(0.5, 0.75))
    video_h = int(round(video_w * rgb.shape[0] / rgb.shape[1]))
    if video_h > canvas_h - title_h - controls_h - 40:  # a tall picture: fit the height instead
        video_h = canvas_h - title_h - controls_h - 40
        video_w = int(round(video_h * rgb.shape[1] / rgb.shape[0]))
    x = int(rng.integers(10, canvas_w - video_w - 10))
    y = int(rng.integers(10, canvas_h - video_h - title_h - controls_h - 10))
    window = desktop[y : y + title_h + video_h + controls_h, x : x + video_w]
    window[:title_h] = (225, 225, 228)
    cv2.putText(window, "episode 05 - Player", (10, 21), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (40, 40, 40), 1, cv2.LINE_AA)
    window[title_h : title_h + video_h] = cv2.resize(rgb, (video_w, video_h), interpolation=cv2.INTER_AREA)
    controls = window[title_h + video_h :]
    controls[:] = (24, 24, 24)
    progress = int(video_w * rng.uniform(0.1, 0.9))
    controls[8:12, 10 : video_w - 10] = (90, 90, 90)
    controls[8:12, 10:progress] = (230, 60, 60)
    cv2.circle(controls, (24, 28), 8, (235, 235, 235), -1)
    return desktop


def _photo_of_screen(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A phone photo of a screen: perspective, a dark surround, blur, uneven light, noise, JPEG."""
    h, w = rgb.shape[:2]
    out_w, out_h = 1024, int(1024 * h / w) + 160
    frame = cv2.resize(rgb, (860, int(860 * h / w)), interpolation=cv2.INTER_AREA)
    fh, fw = frame.shape[:2]
    ox, oy = (out_w - fw) // 2, (out_h - fh) // 2
    src = np.float32([[0, 0], [fw, 0], [fw, fh], [0, fh]])
    jitter = rng.uniform(-0.05, 0.05, (4, 2)) * [fw, fh]
    dst = np.float32(src + [ox, oy] + jitter)
    warped = cv2.warpPerspective(
        frame,
        cv2.getPerspectiveTransform(src, dst),
        (out_w, out_h),
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(18, 18, 22),
    )
    warped = cv2.GaussianBlur(warped, (0, 0), 1.2)
    yy, xx = np.mgrid[0:out_h, 0:out_w]
    cx, cy = rng.uniform(0.3, 0.7) * out_w, rng.uniform(0.3, 0.7) * out_h
    light = 1.15 - 0.45 * np.hypot((xx - cx) / out_w, (yy - cy) / out_h)
    noisy = warped * light[..., None] + rng.normal(0, 5, warped.shape)
    return _jpeg(np.clip(noisy, 0, 255).astype(np.uint8), 70)


DISTORTIONS = {
    "clean": lambda rgb, rng: rgb,
    "jpeg_q30": lambda rgb, rng: _jpeg(rgb, 30),
    "resized_320w": lambda rgb, rng: _resize_width(rgb, 320),
    "subtitled": _subtitle,
    "letterboxed_4_3": lambda rgb, rng: _letterbox_4_3(rgb),
    "cropped_10pct": lambda rgb, rng: _crop(rgb, 0.9, rng),
    "flipped": lambda rgb, rng: rgb[:, ::-1].copy(),
}


def percentile(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else float("nan")


# Issue "robust search": what people really post, on top of the core distortions.
ROBUST_DISTORTIONS = {
    **DISTORTIONS,
    "pillarboxed": lambda rgb, rng: _pillarbox(rgb),
    "tinted": _tint,
    "crop_60pct_area": lambda rgb, rng: _crop_area(rgb, 0.6, rng),
    "half_frame": _half,
    "player_window": _player_window,
    "photo_of_screen": _photo_of_screen,
    "combo": _combo,
    "rotated": _rotate,
    "caption_bar": _caption_bar,
}
