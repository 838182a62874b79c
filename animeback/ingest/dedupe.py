"""Near-duplicate filtering with a perceptual hash; each kept frame covers the time until the next one."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import imagehash
import numpy as np
from PIL import Image

from ..config import DedupeSettings
from .media import Frame


@dataclass(frozen=True)
class KeptFrame:
    """A frame that survived deduplication; it stands for every sampled frame in [start, end)."""

    index: int
    time: float
    start: float
    end: float
    pixels: np.ndarray


def phash64(pixels: np.ndarray) -> int:
    """64-bit pHash (imagehash) of an RGB frame as an int."""
    bits = imagehash.phash(Image.fromarray(pixels)).hash.flatten()
    return int(np.packbits(bits).view(">u8")[0])


class Deduplicator:
    """Drops a frame whose pHash is within `max_distance` bits of one of the last `window` kept frames
    that is at most `max_age_s` older; the age limit keeps every dropped moment within that many seconds of
    a stored frame that looks like it, so time localisation stays exact for returning shots.

    A frame is always kept once the current span reaches `max_span_s`: within a span the picture may drift by
    up to max_distance bits, and a query from late in a long span can look more like the next kept frame;
    with short spans that frame is never more than max_span_s away from the query's true time."""

    def __init__(self, max_distance: int = 9, window: int = 50, max_age_s: float = 1.0, max_span_s: float = 1.0):
        self.max_distance, self.max_age_s, self.max_span_s = max_distance, max_age_s, max_span_s
        self._recent: deque[tuple[float, int]] = deque(maxlen=window)
        self.sampled = 0
        self.kept = 0

    @classmethod
    def from_settings(cls, dedupe: DedupeSettings) -> Deduplicator:
        """The index's filter, as configured (dedupe.*)."""
        return cls(dedupe.max_distance, dedupe.window, dedupe.max_age_s, dedupe.max_span_s)

    def _is_duplicate(self, time: float, value: int) -> bool:
        if not self._recent:
            return False
        last_time, last_value = self._recent[-1]
        if self.max_span_s and time - last_time >= self.max_span_s - 1e-6:
            return False  # a span never grows past max_span_s, so a drifting shot keeps a frame that often
        if (last_value ^ value).bit_count() <= self.max_distance:
            return True  # like the frame being shown: extends its span, whatever its age
        return any(time - t <= self.max_age_s and (v ^ value).bit_count() <= self.max_distance for t, v in self._recent)

    def filter(self, frames: Iterable[Frame], end_time: float) -> Iterator[KeptFrame]:
        """Yield kept frames with closed spans; the last one's span ends at end_time."""
        pending: Frame | None = None
        for frame in frames:
            self.sampled += 1
            value = phash64(frame.pixels)
            if self._is_duplicate(frame.time, value):
                continue
            self._recent.append((frame.time, value))
            self.kept += 1
            if pending is not None:
                yield KeptFrame(pending.index, pending.time, pending.time, frame.time, pending.pixels)
            pending = frame
        if pending is not None:
            yield KeptFrame(pending.index, pending.time, pending.time, max(end_time, pending.time), pending.pixels)
