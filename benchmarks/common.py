"""Helpers shared by the benchmarks: the shared clips, a temporary installation, query distortions."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
CLIPS = ROOT.parent / "shared" / "data" / "clips"

from animeback.config import Settings  # noqa: E402


def shared_clips() -> list[Path]:
    """The shared real clips, or exit with a clear message when the folder is absent."""
    if not CLIPS.is_dir():
        sys.exit(f"benchmark needs the shared clips in {CLIPS}; not found")
    return sorted(p for p in CLIPS.iterdir() if p.is_file())


def settings_for(workdir: Path, library: Path, **overrides) -> Settings:
    """Settings of a throw-away installation under workdir; overrides as 'section.key': value."""
    settings = Settings(base_dir=workdir, library_dir=str(library), data_dir=str(workdir / "data"))
    for key, value in overrides.items():
        section, _, name = key.rpartition(".")
        setattr(getattr(settings, section) if section else settings, name, value)
    return settings


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
    out = subprocess.run(["ffmpeg", "-v", "error", "-ss", f"{at:.3f}", "-i", str(video), "-frames:v", "1",
                          "-f", "image2pipe", "-vcodec", "png", "-"], capture_output=True, check=True).stdout
    return np.asarray(Image.open(io.BytesIO(out)).convert("RGB"))


def _jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def _subtitle(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = rgb.copy()
    h, w = out.shape[:2]
    words = ["I told you", "we have to go", "right now!", "what is this", "look out", "never again", "wait for me"]
    text = " ".join(rng.choice(words, 2))
    scale = w / 640
    size, _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, max(1, int(2 * scale)))
    org = ((w - size[0]) // 2, int(h * 0.92))
    cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), max(2, int(6 * scale)), cv2.LINE_AA)
    cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), max(1, int(2 * scale)), cv2.LINE_AA)
    return out


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
    return rgb[y:y + ch, x:x + cw]


def _resize_width(rgb: np.ndarray, width: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    return cv2.resize(rgb, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)


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
