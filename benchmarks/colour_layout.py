"""A colour-layout baseline built from trace.moe's published description (reference/anchors.md), for comparison.

Every decoded frame is scaled to 320x180 and reduced to the MPEG-7 Colour Layout Descriptor: 8x8 block means in
YCbCr, an 8x8 DCT per channel, quantised, zig-zag, 21 Y + 6 Cb + 6 Cr coefficients. A frame whose descriptor
equals one of the last 50 kept within 2 s is dropped. A query is shrunk to fit 320x320 (borders cut first when
asked); its nearest frames by squared L2 are grouped per file (hits within 5 s of the group join it, the best is
`at`); similarity = clamp((255 - squared L2) / 255, 0, 1). Quantisation here is linear (DC 6 bits, AC 5 bits),
a simplification of MPEG-7's non-linear AC tables; the search is exact (brute force), which can only flatter it.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

_ZIGZAG = sorted(
    ((y, x) for y in range(8) for x in range(8)), key=lambda p: (p[0] + p[1], p[0] if (p[0] + p[1]) % 2 else -p[0])
)
_DCT = cv2.dct  # 8x8 orthonormal DCT-II


def descriptor(rgb: np.ndarray) -> np.ndarray:
    """The 33 colour-layout coefficients of an RGB image."""
    small = cv2.resize(rgb, (8, 8), interpolation=cv2.INTER_AREA).astype(np.float32)
    ycc = cv2.cvtColor(small.astype(np.uint8), cv2.COLOR_RGB2YCrCb).astype(np.float32)
    y, cr, cb = ycc[..., 0], ycc[..., 1], ycc[..., 2]
    out = []
    for channel, count in ((y, 21), (cb, 6), (cr, 6)):
        coefficients = _DCT(channel)
        zz = [coefficients[p] for p in _ZIGZAG[:count]]
        dc = np.clip(zz[0] / 8.0 / 4.0, 0, 63)  # DC: mean level, 6 bits
        ac = [np.clip(v / 8.0 + 16, 0, 31) for v in zz[1:]]  # AC: 5 bits around 16
        out += [dc, *ac]
    return np.round(np.array(out, dtype=np.float32))


@dataclass
class ColourLayoutIndex:
    """Descriptors of kept frames, with their file and time."""

    vectors: np.ndarray
    files: list[str]
    times: np.ndarray

    @classmethod
    def build(cls, clips: list[Path]) -> ColourLayoutIndex:
        vectors, files, times = [], [], []
        for clip in clips:
            kept: list[tuple[float, np.ndarray]] = []
            for t, rgb in _decoded_frames(clip):
                d = descriptor(rgb)
                recent = [v for (kt, v) in kept[-50:] if t - kt <= 2.0]
                if any(np.array_equal(d, v) for v in recent):
                    continue
                kept.append((t, d))
                vectors.append(d)
                files.append(clip.name)
                times.append(t)
        return cls(np.stack(vectors), files, np.array(times))

    @property
    def bytes(self) -> int:
        return self.vectors.shape[0] * 33 * 2  # trace.moe stores fp16

    def search(self, rgb: np.ndarray, candidates: int = 1000) -> tuple[str, float, float, float, float]:
        """(file, from, at, to, similarity) of the best group for a query."""
        h, w = rgb.shape[:2]
        scale = min(1.0, 320 / max(h, w))
        query = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        d2 = ((self.vectors - descriptor(query)) ** 2).sum(axis=1)
        order = np.argsort(d2)[:candidates]
        best = order[0]
        file, at = self.files[best], float(self.times[best])
        lo = hi = at
        grown = True
        members = [i for i in order if self.files[i] == file]
        while grown:
            grown = False
            for i in members:
                t = float(self.times[i])
                if lo - 5.0 <= t <= hi + 5.0 and (t < lo or t > hi):
                    lo, hi, grown = min(lo, t), max(hi, t), True
        return file, lo, at, hi, float(np.clip((255 - d2[best]) / 255, 0, 1))


def _decoded_frames(clip: Path):
    """(time, 320x180 RGB) for every decoded frame of a clip."""
    probe = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=avg_frame_rate",
            "-of",
            "csv=p=0",
            str(clip),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    num, _, den = probe.partition("/")
    fps = float(num) / float(den or 1) if float(num or 0) else 25.0
    proc = subprocess.Popen(
        ["ffmpeg", "-v", "error", "-i", str(clip), "-vf", "scale=320:180", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        stdout=subprocess.PIPE,
    )
    size = 320 * 180 * 3
    k = 0
    while True:
        raw = proc.stdout.read(size)
        if len(raw) < size:
            break
        yield k / fps, np.frombuffer(raw, np.uint8).reshape(180, 320, 3)
        k += 1
    proc.wait()
