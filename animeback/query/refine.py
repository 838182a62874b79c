"""The exact moment: after search has found a scene, compare the query with every frame around it, decoded at
full frame rate from the episode's moment track (or, for episodes indexed before there was one, its preview), and
report the frame on screen and the span that shows the same picture.

The index holds a few frames per second, and near-duplicates only once with the span they cover, so a scene's
stored frames place a moment to within a second or more. Frames of one scene differ by motion, not content, so
plain pixels tell them apart once the query is laid over the frame: the query's grey picture, taken as the whole
frame (or, failing that, placed as a mild crop of the frame search matched), scores every decoded frame by
normalised cross-correlation. In a slow pan a long scene's stored frames all look alike to the CNN and search's
moment may be seconds off: when no frame read is surely the query's, the scene's keyframes say where else to read.
Decoding runs in this process (PyAV): starting an ffmpeg program costs more
than the whole refinement. The moment track `process` writes is already grey and small (MOMENT_WIDTH wide), so a
second of it decodes in about a millisecond, a seventh of the preview's time, and its readers stay open between
searches (ReaderPool), since opening a long episode's file costs more than reading a second of it.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from ..imaging import CAPTION_MIN_SHARE, MOMENT_WIDTH, caption_box, content_box, is_cropped

log = logging.getLogger(__name__)

# Decoded frames are compared this wide, the moment track's width: motion between neighbouring frames shows, and a
# second of frames compares in a millisecond.
REFINE_WIDTH = MOMENT_WIDTH
# A query this poorly matched by its best placement is not the scene's picture seen plainly: the search's own
# moment is kept.
MIN_PLACEMENT_SCORE = 0.5
# Decoded frames scoring within this of the best show the same picture (a still shot's frames score within
# about 0.001 of each other through the track's compression; a moving shot's neighbours differ by more).
SAME_PICTURE = 0.004
# Frames of a still shot tie with each other closer than this; a nearly still shot's stay within SAME_PICTURE of the
# query's own frame for a second or more (Tom and Jerry: 0.995-0.996 over 0.4 s), so `at` is one that ties with it.
STILL_TIE = 0.001
# The best frame must score this well to be taken for the query's (clean, recompressed, tinted or subtitled
# queries of their own frame score 0.9-1.0); below it the stored frames' moment is kept.
ACCEPT_SCORE = 0.9
# A query placed as a crop: a crop placed nearly right on a frame of a slow zoom or pan peaks at 0.95-0.96 there,
# seconds from its own frame, but a shrunk JPEG's crop (combo) peaks there on its own frame, and taking those gained
# more than it lost (benchmarks/README.md).
CROP_ACCEPT_SCORE = 0.94
# Below this the best frame read so far may be a neighbour of the query's in a slow pan (measured: 0.906 a second
# from the query's own frame, which scored 0.98): the frames around are read on as when there is no likeness yet.
SURE_SCORE = 0.95
# A reading this like a frame is taken without the costlier ones: a picture turned back is not also placed as a crop,
# nor a crop placed on the frame most like it as a whole placed on the other frames too.
CERTAIN_SCORE = 0.98
# A doubtful scene (search's similarity low) is read only when some frame near search's moment is this like the query,
# as a whole frame or placed as a crop, roughly: not-indexed screenshots' doubtful scenes scored at most 0.70, the
# right ones 0.77 and more (measured); reading on a scene with no such likeness cost about 60 ms and found nothing.
PLAUSIBLE_SCORE = 0.75
# A whole-frame query this many degrees turned is read turned back (a photo of a screen held askew, a rotated
# repost); less is no turn, more no frame of ours.
MIN_ROTATION, MAX_ROTATION = 0.4, 6.0
DEROTATE_FROM = 0.6  # a whole-frame likeness under this is not sought turned
# An orientation (the query or its mirror) this much more like the frames as a whole is the one placed as a crop.
ORIENTATION_MARGIN = 0.1
# A picture whose height or width is this share of a frame's shape from it is read as that shape (stretched).
SHAPE_TOLERANCE = 0.04
SUBTITLE_SHARE = 0.3  # of a picture's height, at its bottom: where subtitles are burnt in
_PASSES = 3  # placements on the best frame so far, until the place found no longer moves
# The query may be a crop: it is tried at these shares of the frame's size (its shape kept), then finer around
# the best (down to about 74% of the frame's side: a crop keeping 60% of the area is 77% of it).
_PLACEMENT_SCALES = (1.0, 0.9, 0.8)
_FINE_STEPS = (-0.06, -0.03, 0.03, 0.06)
# A scene's keyframes are looked at (exact_moment) from this far beyond what was read to the scene's ends.
SCAN_MARGIN_S = 0.5
# Decoded first: this far either side of search's moment. The frame search matched is the nearest stored one, a
# third of a second apart at the default sampling; a still or slow shot stored as one frame may reach further,
# and the window then grows towards the better frames.
WINDOW_S = 0.35
MAX_REACH_S = 2.0
UNSURE_REACH_S = 1.0
# Pixel formats whose first plane is 8-bit luma, as the previews' yuv420p.
_EIGHT_BIT_LUMA_FIRST = ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21", "gray")
_DECODER_DELAY = 8  # frames: H.264's reordering delay is at most a few


@dataclass(frozen=True)
class Moment:
    """The frame on screen (`at`) and the span showing the same picture (`start`..`end`), in seconds."""

    at: float
    start: float
    end: float
    likeness: float  # the frame's score under the query's placement (normalised cross-correlation)
    # Read as a crop of the frame: a crop's place is free, so in a pan it fits frames seconds from its own about as
    # well, and its likeness tells them apart poorly.
    as_crop: bool = False


@dataclass(frozen=True)
class Crop:
    """The picture inside a video's black bars, as shares of its width and height."""

    x: float
    y: float
    w: float
    h: float


class FrameReader:
    """Grey frames of a video, REFINE_WIDTH wide, inside its black bars, decoded in this process (PyAV)."""

    def __init__(self, video: Path, crop: Crop | None):
        self.container = av.open(str(video))
        if not self.container.streams.video:
            self.container.close()
            raise ValueError("no video stream")
        self.stream = self.container.streams.video[0]
        # One decoding thread: a search's worker is one of several, and a thread pool costs more than it saves here.
        self.stream.thread_count = 1
        self.time_base = float(self.stream.time_base or 0) or 1 / 90000
        self.origin = self.stream.start_time or 0
        rate = float(self.stream.average_rate or 0)
        self.frame_s = 1.0 / rate if 1.0 <= rate <= 240.0 else 1.0 / 24
        self.crop = crop
        self._decoded: Iterator[av.VideoFrame] | None = None

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def read(self, start: float, end: float) -> tuple[list[float], list[np.ndarray]]:
        """The frames shown from `start` to `end` (seconds), with their times."""
        self.container.seek(self.origin + int(max(0.0, start) / self.time_base), stream=self.stream, backward=True)
        self._decoded = self.container.decode(self.stream)
        # From the keyframe to `start`, frames no other frame refers to need not be decoded at all.
        self.stream.codec_context.skip_frame = "NONREF"
        return self.read_on(end, after=start - self.frame_s / 2)

    def keyframes(self, start: float, end: float) -> tuple[list[float], list[np.ndarray]]:
        """The keyframes from `start` to `end` (seconds) alone, with their times: at least one a second in the
        tracks `process` writes, and each decodes without any other frame."""
        self.container.seek(self.origin + int(max(0.0, start) / self.time_base), stream=self.stream, backward=True)
        self.stream.codec_context.skip_frame = "NONKEY"
        times: list[float] = []
        frames: list[np.ndarray] = []
        try:
            for frame in self.container.decode(self.stream):
                if frame.pts is None:
                    continue
                t = self._seconds(frame.pts)
                if t > end:
                    break
                if t >= start:
                    times.append(t)
                    frames.append(self._grey(frame))
        finally:
            self.stream.codec_context.skip_frame = "DEFAULT"
            self._decoded = None  # a later read_on must seek first
        return times, frames

    def read_on(self, end: float, after: float = -1.0) -> tuple[list[float], list[np.ndarray]]:
        """The frames after the last one read (or after `after`) up to `end`."""
        times: list[float] = []
        frames: list[np.ndarray] = []
        for frame in self._decoded or ():
            if frame.pts is None:
                continue
            t = self._seconds(frame.pts)
            if t < after - _DECODER_DELAY * self.frame_s:
                continue  # decoded from the keyframe before the stretch asked for
            # Every frame again, a few frames early: frames already in the decoder's reordering queue were skipped.
            self.stream.codec_context.skip_frame = "DEFAULT"
            if t < after:
                continue
            times.append(t)
            frames.append(self._grey(frame))
            if t >= end:
                break
        return times, frames

    def _seconds(self, pts: int) -> float:
        """A frame's time in seconds from the stream's start."""
        return (pts - self.origin) * self.time_base

    def _grey(self, frame: av.VideoFrame) -> np.ndarray:
        if frame.format.name in _EIGHT_BIT_LUMA_FIRST:
            # The luma plane as it is: converting to RGB first costs three times the decoding.
            plane = frame.planes[0]
            luma = np.frombuffer(memoryview(plane), np.uint8).reshape(frame.height, plane.line_size)[:, : frame.width]
        else:  # an episode's own file (previews off) in another pixel format: 10-bit, palette (GIF), RGB
            luma = np.asarray(frame.to_ndarray(format="gray"), np.uint8)
        if self.crop:
            c, (h, w) = self.crop, luma.shape
            x, y = round(c.x * w), round(c.y * h)
            luma = luma[y : y + max(1, round(c.h * h)), x : x + max(1, round(c.w * w))]
        h, w = luma.shape
        if w == REFINE_WIDTH:  # a moment track: the picture alone, at this size already
            return luma.astype(np.float32)
        size = (REFINE_WIDTH, max(2, round(REFINE_WIDTH * h / w)))
        return cv2.resize(np.ascontiguousarray(luma), size, interpolation=cv2.INTER_AREA).astype(np.float32)

    def close(self) -> None:
        self.container.close()


class ReaderPool:
    """FrameReaders kept open for later searches of the same video (at most `size` idle ones, the least recently
    used closed first): opening a long episode's file costs more than reading a second of it. Each reader serves
    one search at a time; searches of one video at once each get their own."""

    def __init__(self, size: int = 16):
        self.size = size
        self._idle: OrderedDict[int, tuple[tuple, FrameReader]] = OrderedDict()
        self._lock = threading.Lock()
        self._taken = 0

    @contextmanager
    def reader(self, video: Path, crop: Crop | None) -> Iterator[FrameReader]:
        """An open reader of the video: an idle one, else a new one; kept for later unless reading it failed."""
        info = video.stat()
        # A file replaced under the same name (an episode re-encoded in the library) is another file.
        key = (str(video), info.st_ino, info.st_size, info.st_mtime_ns, crop)
        with self._lock:
            ticket = next((t for t, (k, _) in reversed(self._idle.items()) if k == key), None)
            reader = self._idle.pop(ticket)[1] if ticket is not None else None
        if reader is None:
            reader = FrameReader(video, crop)
        try:
            yield reader
        except BaseException:
            reader.close()
            raise
        with self._lock:
            self._taken += 1
            self._idle[self._taken] = (key, reader)
            while len(self._idle) > self.size:
                self._idle.popitem(last=False)[1][1].close()

    @property
    def idle(self) -> int:
        """How many readers are open and free."""
        return len(self._idle)

    def close(self) -> None:
        """Close every idle reader."""
        with self._lock:
            while self._idle:
                self._idle.popitem()[1][1].close()


def grey_query(query_rgb: np.ndarray, frame_shape: tuple[int, ...]) -> np.ndarray:
    """The query in grey at the largest size that fits a decoded frame (its shape kept): its templates are
    shrunk from this, never from the full-size picture."""
    fh, fw = frame_shape[:2]
    qh, qw = query_rgb.shape[:2]
    fit = min(fw / qw, fh / qh)
    size = (max(1, min(fw, round(qw * fit))), max(1, min(fh, round(qh * fit))))
    # Grey first: shrinking one channel costs half of shrinking three, for the same picture.
    grey = cv2.cvtColor(np.ascontiguousarray(query_rgb), cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA).astype(np.float32)


@dataclass(frozen=True)
class Placement:
    """Where the query lies on a frame: its grey template at a share `scale` of the largest size that fits, its
    top-left corner, and how well it fits there."""

    score: float
    scale: float
    x: int
    y: int
    template: np.ndarray
    derotated: bool = False  # the whole frame turned back upright, its rotated-in corners left out

    @property
    def as_whole(self) -> bool:
        """Whether the query lies over the whole frame (as it is, or turned back), not over a crop of it."""
        return self.derotated or (self.scale == 1.0 and self.x == self.y == 0)


class Templates:
    """A grey query's templates (grey_query) at each share of its size asked for, each shrunk once however many
    frames it is placed on (shrinking it per frame cost as much as the placing)."""

    def __init__(self, query: np.ndarray):
        self.query = query
        self._made: dict[float, np.ndarray | None] = {}
        self._half_size: Templates | None = None

    @property
    def halved(self) -> Templates:
        """The templates of the query at half its size (made once)."""
        if self._half_size is None:
            self._half_size = Templates(_halved(self.query))
        return self._half_size

    def at(self, scale: float) -> np.ndarray | None:
        """The template at this share of the query's size; None when it is too small, over the whole size or one flat
        tone."""
        if scale not in self._made:
            h, w = self.query.shape
            tw, th = round(w * scale), round(h * scale)
            if tw < 16 or th < 16 or scale > 1.0:
                template = None
            else:
                template = (
                    self.query if scale == 1.0 else cv2.resize(self.query, (tw, th), interpolation=cv2.INTER_AREA)
                )
                template = template if template.std() >= 1.0 else None
            self._made[scale] = template
        return self._made[scale]


def place_query(query: Templates, frame: np.ndarray, fine: bool = True) -> Placement | None:
    """The best placement of the query's templates on a grey frame, taken as the whole frame or as a crop of it;
    without fine only the coarse sizes. None when the query is one flat tone."""
    found = [p for scale in _PLACEMENT_SCALES if (p := _placed(query, frame, scale)) is not None]
    if not found:
        return None
    best = max(found, key=lambda p: p.score)
    for step in _FINE_STEPS if fine else ():
        p = _placed(query, frame, round(best.scale + step, 3))
        if p is not None and p.score > best.score:
            best = p
    return best


def _placed(query: Templates, frame: np.ndarray, scale: float) -> Placement | None:
    """The query's template at this share placed where it fits the frame best; None when there is no such template."""
    template = query.at(scale)
    if template is None:
        return None
    _, score, _, (x, y) = cv2.minMaxLoc(cv2.matchTemplate(frame, template, cv2.TM_CCOEFF_NORMED))
    return Placement(float(score), scale, int(x), int(y), template)


def correlations(frames: list[np.ndarray], placement: Placement) -> np.ndarray:
    """Normalised cross-correlation of the placed template with each grey frame's patch under it."""
    th, tw = placement.template.shape
    x, y = placement.x, placement.y
    template = placement.template - placement.template.mean()
    template /= max(float(np.linalg.norm(template)), 1e-6)
    if not frames:
        return np.zeros(0, np.float32)
    # All patches at once: a frame at a time cost as much again in numpy's per-call overhead.
    patches = np.stack([frame[y : y + th, x : x + tw] for frame in frames])
    patches -= patches.mean(axis=(1, 2), keepdims=True)
    norms = np.sqrt(np.einsum("nij,nij->n", patches, patches))
    dots = np.einsum("nij,ij->n", patches, template)
    return np.where(norms > 1e-6, dots / np.maximum(norms, 1e-6), 0.0).astype(np.float32)


class _Frames:
    """The frames read so far around search's moment, read further on demand within the scene's reach."""

    def __init__(self, reader: FrameReader, near: float, lo: float, hi: float):
        self.reader, self.near = reader, near
        self.reach_lo, self.reach_hi = max(lo, near - MAX_REACH_S), min(hi, near + MAX_REACH_S)
        self.times, self.frames = reader.read(max(lo, near - WINDOW_S), min(hi, near + WINDOW_S))
        self.at_end = True  # the decoder is just past the last frame held (not after a seek back)
        self._halves: dict[int, np.ndarray] = {}  # each held frame at half size, by id(frame), made when first asked

    def halved(self, frame: np.ndarray) -> np.ndarray:
        """A held frame at half its size, shrunk once for every placement on it."""
        key = id(frame)  # held frames stay held, so their ids are not reused while this lives
        if key not in self._halves:
            self._halves[key] = _halved(frame)
        return self._halves[key]

    def nearest(self, among: np.ndarray | None = None) -> int:
        """The frame held nearest search's moment (of the indices among, when given)."""
        indices = np.arange(len(self.times)) if among is None else among
        return int(indices[np.argmin(np.abs(np.asarray(self.times)[indices] - self.near))])

    def best(self, scores: np.ndarray) -> tuple[int, np.ndarray]:
        """The frame `at` names and every frame showing the same picture (scoring within SAME_PICTURE of the best):
        of the frames in the best one's showing that tie with it, the one nearest search's moment (a still shot's
        frames tie; any would do, this one agrees with the stored frames)."""
        same = np.flatnonzero(scores >= scores.max() - SAME_PICTURE)
        # Showings are runs of such frames: one for a still shot, several for a cycle of drawings, whose showings may
        # differ too little for SAME_PICTURE (a clean One Piece query was answered with a frame of the cycle's showing
        # 0.5 s from its own, at 0.998).
        top = int(np.argmax(scores))
        first, last = _run_around(scores, top)
        showing = np.arange(first, last + 1)
        return self.nearest(showing[scores[showing] >= scores[top] - STILL_TIE]), same

    def scores(
        self, placement: Placement, held_scores: np.ndarray | None = None, whole_reach: bool = False
    ) -> np.ndarray:
        """Every frame's score under the placement (given for the frames held, or computed), frames read further
        while the best is at an end of those held (the better ones lie beyond) or is no plain likeness (the
        query's frame lies further away), or, with whole_reach, until the scene's reach is read."""
        reader, half = self.reader, self.reader.frame_s / 2
        scores = correlations(self.frames, placement) if held_scores is None else held_scores
        while True:
            best = int(np.argmax(scores))
            # No sure likeness yet: read on only within UNSURE_REACH_S, since a false match would read the most; but a
            # picture shown again and again (whole_reach) is plainly the query's already, and any showing may be its.
            unsure = scores[best] < SURE_SCORE and not whole_reach
            lo_limit = max(self.reach_lo, self.near - UNSURE_REACH_S) if unsure else self.reach_lo
            hi_limit = min(self.reach_hi, self.near + UNSURE_REACH_S) if unsure else self.reach_hi
            later = (best == len(scores) - 1 or unsure or whole_reach) and self.times[-1] < hi_limit - half
            earlier = (best == 0 or unsure or whole_reach) and self.times[0] > lo_limit + half
            if not (later or earlier):
                return scores
            if later and earlier:
                # Both sides (no sure likeness): one pass from the earlier limit to the later one, since a seek to
                # either side decodes from the keyframe before it again, which costs more than decoding the frames
                # held a second time.
                scores = self._read_around(placement, scores, lo_limit, hi_limit)
                continue
            if later:
                until = min(hi_limit, self.times[-1] + 2 * WINDOW_S)
                if self.at_end:
                    times, frames = reader.read_on(until)
                else:
                    times, frames = reader.read(self.times[-1] + reader.frame_s, until)
            else:
                times, frames = reader.read(max(lo_limit, self.times[0] - 2 * WINDOW_S), self.times[0] - half)
                kept = [i for i, t in enumerate(times) if t < self.times[0] - half]
                times, frames = [times[i] for i in kept], [frames[i] for i in kept]
            self.at_end = later
            if not frames:  # the video ends (or starts) before the scene's reach: nothing more on this side
                if later:
                    self.reach_hi = self.times[-1]
                else:
                    self.reach_lo = self.times[0]
                continue
            more = correlations(frames, placement)
            if later:
                self.times, self.frames, scores = self.times + times, self.frames + frames, np.append(scores, more)
            else:
                self.times, self.frames, scores = times + self.times, frames + self.frames, np.append(more, scores)

    def _read_around(self, placement: Placement, scores: np.ndarray, lo: float, hi: float) -> np.ndarray:
        """The frames from lo to hi that are not held yet, read in one pass and held with their scores."""
        times, frames = self.reader.read(lo, hi)
        self.at_end = True
        first, last = self.times[0] - self.reader.frame_s / 2, self.times[-1] + self.reader.frame_s / 2
        before = [i for i, t in enumerate(times) if t < first]
        after = [i for i, t in enumerate(times) if t > last]
        if not before:  # the video starts after lo: nothing more on this side
            self.reach_lo = self.times[0]
        if not after:  # or ends before hi
            self.reach_hi = self.times[-1]
        earlier, later = [frames[i] for i in before], [frames[i] for i in after]
        parts = [correlations(earlier, placement), scores, correlations(later, placement)]
        self.times = [times[i] for i in before] + self.times + [times[i] for i in after]
        self.frames = earlier + self.frames + later
        return np.concatenate(parts)


def _run_around(scores: np.ndarray, index: int) -> tuple[int, int]:
    """The first and last of the contiguous frames around `index` scoring within SAME_PICTURE of the best score."""
    floor = float(scores.max()) - SAME_PICTURE
    first = last = index
    while first > 0 and scores[first - 1] >= floor:
        first -= 1
    while last < len(scores) - 1 and scores[last + 1] >= floor:
        last += 1
    return first, last


def _as_crop(
    greys: list[tuple[np.ndarray, float]], held: _Frames, likeliest_at: float
) -> tuple[Placement, np.ndarray] | None:
    """The query taken as a crop of a frame (each grey orientation with its best score as a whole frame): placed
    at the coarse sizes on the frame at `likeliest_at` (most like it as a whole) and, unless it fits there beyond
    doubt, on every other frame held, finely on the frame it fits best, then again on the best frame
    under that place until the place no longer moves (a zoom or pan makes the query look like a crop of its
    neighbours; it fits its own best)."""
    greys = sorted(greys, key=lambda oriented: -oriented[1])
    if len(greys) == 2 and greys[0][1] - greys[1][1] >= ORIENTATION_MARGIN:
        greys = greys[:1]  # the crop's orientation is plain from the whole frame's likeness already
    # Every other frame, at half size: the frame search matched may be a second from the query's, and in between the
    # picture moved, so that a crop (a half frame, say) fits it poorly and only at a wrong place (measured); which
    # frame fits best shows at half the size, and neighbouring frames differ too little for both to be needed.
    likeliest = held.times.index(likeliest_at)
    found: tuple[Placement, Templates] | None = None
    for grey, _ in greys:
        templates = Templates(grey)
        # The frame most like the query as a whole is mostly its own (a crop keeping most of the frame): placed
        # plainly there, the query need not be placed on every other frame (most of a crop's cost).
        first = place_query(templates.halved, held.halved(held.frames[likeliest]), fine=False)
        if first is not None and first.score >= CERTAIN_SCORE:
            coarse = [(first.score, likeliest)]
        else:
            coarse = [
                (p.score, i)
                for i in range(0, len(held.frames), 2)
                if (p := place_query(templates.halved, held.halved(held.frames[i]), fine=False))
            ]
        # (Too small to place at half size: on the frame search matched.)
        placement = place_query(templates, held.frames[max(coarse)[1] if coarse else held.nearest()])
        good = placement is not None and placement.score >= MIN_PLACEMENT_SCORE
        if placement is not None and good and (found is None or placement.score > found[0].score):
            found = (placement, templates)
        if found is not None and found[0].score >= SURE_SCORE:
            break  # surely placed: the other orientation cannot fit better
    if found is None:
        return None
    placement, templates = found
    scores = held.scores(placement)
    for _ in range(_PASSES):
        replaced = place_query(templates, held.frames[int(np.argmax(scores))])
        if replaced is None or (replaced.scale, replaced.x, replaced.y) == (placement.scale, placement.x, placement.y):
            break
        placement = replaced
        scores = held.scores(placement)
    return placement, scores


def _derotated(whole: Placement, held: _Frames, index: int) -> Placement | None:
    """The whole-frame query turned to lie over a held frame (a photo or screenshot taken a few degrees off), as the
    part of it inside its rotated-in corners; None when it is not turned, or turned further than a hand would."""
    frame = held.frames[index]
    small = held.halved(frame)
    try:
        # Aligned at half size (a quarter of the cost; the angle shows as well), the shift then doubled.
        _, found = cv2.findTransformECC(
            small,
            _halved(whole.template),
            np.eye(2, 3, dtype=np.float32),
            cv2.MOTION_EUCLIDEAN,
            (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 30, 1e-4),
            np.ones(small.shape, np.uint8),
            1,
        )
    except cv2.error:
        return None  # no alignment found (a flat frame, or one unlike the query)
    warp = np.asarray(found, np.float32)
    warp[:, 2] *= 2
    angle = abs(float(np.degrees(np.arctan2(warp[1, 0], warp[0, 0]))))
    if not MIN_ROTATION <= angle <= MAX_ROTATION:
        return None
    h, w = frame.shape
    upright = cv2.warpAffine(whole.template, warp, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    inset = int(np.ceil(np.sin(np.radians(angle)) * w)) + 1
    x, y = inset + int(np.ceil(abs(warp[0, 2]))), inset + int(np.ceil(abs(warp[1, 2])))
    if w - 2 * x < w // 2 or h - 2 * y < h // 2:
        return None
    return Placement(0.0, 1.0, x, y, np.ascontiguousarray(upright[y : h - y, x : w - x]), derotated=True)


def _halved(grey: np.ndarray) -> np.ndarray:
    """A grey picture at half its size."""
    return cv2.resize(grey, (max(1, grey.shape[1] // 2), max(1, grey.shape[0] // 2)), interpolation=cv2.INTER_AREA)


def _whole(grey: np.ndarray, shape: tuple[int, ...]) -> Placement:
    """The grey query stretched over the whole frame."""
    return Placement(0.0, 1.0, 0, 0, cv2.resize(grey, (shape[1], shape[0]), interpolation=cv2.INTER_AREA))


def exact_moment(
    query_rgb: np.ndarray, reader: FrameReader, near: float, lo: float, hi: float, doubtful: bool = False
) -> Moment | None:
    """The frame most like the query around search's moment `near` (within the scene's lo..hi) and the run of
    frames around it showing the same picture; None when no frames are read or none is plainly the query's (for a
    doubtful scene, at once when no frame near `near` is roughly like it). When no frame there is certainly the
    query's and the scene reaches further, its keyframes elsewhere are looked at too (as a whole frame only, when a
    frame read is plainly the query's picture)."""
    held = _Frames(reader, near, lo, hi)
    if not held.frames:
        return None
    if doubtful and _rough_likeness(query_rgb, held.frames[::2], held.halved).max() < PLAUSIBLE_SCORE:
        return None
    found = _moment_in(query_rgb, held, lo, hi)
    if found is not None and found.likeness >= CERTAIN_SCORE:
        return found
    # Plainly the picture, yet maybe not its own frame: in a slow zoom or pan a whole frame is nearly its neighbours
    # seconds off, or a crop of them (measured: a Big Buck Bunny frame read 2.5 s off at 0.952, its own 0.993;
    # resized or subtitled Motion Graphics frames placed as crops 1.5-3 s off at 0.945-0.955): a keyframe elsewhere
    # like it as a whole frame is read on as one. With no plain reading, in a slow pan or zoom the stored frames of a
    # long scene all look alike to the CNN, and search's moment may lie seconds from the query's frame (measured: 1-6 s
    # for most half frames and combos whose moment was not exact): the likeliest keyframe is read on in every way.
    plain = found is not None and (found.as_crop or found.likeness >= SURE_SCORE)
    elsewhere = _likeliest_keyframe(query_rgb, reader, (held.times[0], held.times[-1]), lo, hi, whole_only=plain)
    if elsewhere is None:
        return found
    again = _Frames(reader, elsewhere, lo, hi)
    if not again.frames:
        return found
    other = (
        _WholeReading(query_rgb, again).moment(lo, hi, crops=False) if plain else _moment_in(query_rgb, again, lo, hi)
    )
    # A crop's likeness does not outweigh a whole frame's, and one within SAME_PICTURE of the first reading shows the
    # same picture (a still shot, read again further on): the first reading agrees with the stored frames.
    if other is not None and (
        found is None or found.as_crop or (not other.as_crop and other.likeness > found.likeness + SAME_PICTURE)
    ):
        return other
    return found


def _likeliest_keyframe(
    query_rgb: np.ndarray,
    reader: FrameReader,
    seen: tuple[float, float],
    lo: float,
    hi: float,
    whole_only: bool = False,
) -> float | None:
    """The time of the scene's keyframe outside the stretch already seen that is most like the query, as a whole
    frame or placed as a crop at the coarse sizes at half size (either orientation); None when the scene has none.
    With whole_only, as a whole frame only, and None unless it is at least PLAUSIBLE_SCORE like it."""
    times: list[float] = []
    frames: list[np.ndarray] = []
    for start, end in ((lo, seen[0] - SCAN_MARGIN_S), (seen[1] + SCAN_MARGIN_S, hi)):
        if end > start:
            more_times, more_frames = reader.keyframes(start, end)
            times += more_times
            frames += more_frames
    if not frames:
        return None
    likeness = _rough_likeness(query_rgb, frames, _halved, crops=not whole_only)
    likeliest = int(np.argmax(likeness))
    return times[likeliest] if not whole_only or likeness[likeliest] >= PLAUSIBLE_SCORE else None


def _rough_likeness(
    query_rgb: np.ndarray, frames: list[np.ndarray], halve: Callable[[np.ndarray], np.ndarray], crops: bool = True
) -> np.ndarray:
    """Each grey frame's likeness to the query, as a whole frame or (with crops) placed as a crop at the coarse sizes
    at half size (`halve` shrinks a frame), in either orientation."""
    grey = grey_query(query_rgb, frames[0].shape)
    likeness = np.full(len(frames), -1.0)
    for oriented in (grey, np.ascontiguousarray(grey[:, ::-1])):
        likeness = np.maximum(likeness, correlations(frames, _whole(oriented, frames[0].shape)))
        if not crops:
            continue
        templates = Templates(oriented).halved
        for i, frame in enumerate(frames):
            placed = place_query(templates, halve(frame), fine=False)
            if placed is not None:
                likeness[i] = max(likeness[i], placed.score)
    return likeness


def _moment_in(query_rgb: np.ndarray, held: _Frames, lo: float, hi: float) -> Moment | None:
    """exact_moment on the frames held (read further as the readings ask)."""
    # Cheapest reading first: most screenshots are whole frames, and a captioned one is a whole frame once its bar
    # is cut, so both come before placing the picture as a crop (which costs the most, and fails on either).
    sent = _WholeReading(query_rgb, held)
    found = sent.moment(lo, hi, crops=False)
    # A meme's caption bar above or below the picture keeps it from lying over any frame: the picture without it
    # (and without black bars it had inside), as a whole frame first. Not taken for the picture before the whole
    # query fails, since a flat sky or a plain background at a picture's edge may look like a bar too.
    cut = None
    uncaptioned = [query_rgb]
    box = caption_box(query_rgb) if found is None else None
    if box is not None and is_cropped(box, query_rgb.shape):
        inside = box.crop(query_rgb)
        uncaptioned = [content_box(inside).crop(inside), query_rgb]
        cut = _WholeReading(uncaptioned[0], held)
        found = cut.moment(lo, hi, crops=False)
    shape = held.frames[0].shape
    for part in [p for picture in uncaptioned for p in _frame_shaped_parts(picture, shape)] if found is None else ():
        # Bars the picture's own edges run into are not told from it (a night sky inside a letterbox, a white sky
        # under a white caption bar), or a bar is taken too tall, but the picture between or beside them has a
        # frame's shape.
        found = _WholeReading(part, held).moment(lo, hi, crops=False)
        if found is not None:
            break
    # Then as a crop of a frame: the picture without its caption (a meme of a cropped frame), or as it is.
    if found is None and cut is not None:
        found = cut.moment(lo, hi)
    if found is None:
        found = sent.moment(lo, hi)
    if found is None:
        # Burnt-in subtitles cover the picture's lower part and lower every frame's likeness: its upper part alone,
        # as a crop of the frame.
        h = query_rgb.shape[0]
        found = _WholeReading(query_rgb[: h - round(h * SUBTITLE_SHARE)], held).moment(lo, hi)
    return found


def _frame_shaped_parts(rgb: np.ndarray, frame_shape: tuple[int, ...]) -> list[np.ndarray]:
    """The parts of a picture of another shape than a frame's that have the frame's shape: its middle (a letterboxed
    or pillarboxed frame whose bars were left on it), then, for a picture taller by at least a caption bar's height,
    its bottom and top; none for a picture of the frame's shape."""
    h, w = rgb.shape[:2]
    tall = round(w * frame_shape[0] / frame_shape[1])
    wide = round(h * frame_shape[1] / frame_shape[0])
    if tall <= h * (1 - SHAPE_TOLERANCE):
        top = (h - tall) // 2
        ends = [rgb[h - tall :], rgb[:tall]] if h - tall >= CAPTION_MIN_SHARE * h else []
        return [rgb[top : top + tall], *ends]
    if wide <= w * (1 - SHAPE_TOLERANCE):
        left = (w - wide) // 2
        return [rgb[:, left : left + wide]]
    return []


class _WholeReading:
    """A picture read over the frames held: first as a whole frame, the better of it and its mirror (search matches a
    flipped screenshot without its mirror when the CNN's vector hardly changes under the flip, but pixels do), then
    in moment() turned back or as a crop."""

    def __init__(self, query_rgb: np.ndarray, held: _Frames):
        self.held = held
        shape = held.frames[0].shape
        grey = grey_query(query_rgb, shape)  # shrunk once; its mirror is the small copy flipped
        self.greys: list[tuple[np.ndarray, float]] = []  # each orientation and its best score as a whole frame
        for oriented in (grey, np.ascontiguousarray(grey[:, ::-1])):
            whole = _whole(oriented, shape)
            whole_scores = correlations(held.frames, whole)
            self.greys.append((oriented, float(whole_scores.max())))
            if len(self.greys) == 1 or self.greys[-1][1] > self.greys[0][1]:
                self.placement, self.scores = whole, whole_scores
            if self.greys[-1][1] >= ACCEPT_SCORE:
                break  # plainly the picture: its mirror need not be tried

    def moment(self, lo: float, hi: float, crops: bool = True) -> Moment | None:
        """exact_moment for this picture as a whole frame, then (with crops, when no frame is plainly it) as a crop of
        one; the frames held are read further as needed."""
        held, placement = self.held, self.placement
        # Scores of fewer frames than held: another reading has read more since.
        known = self.scores if len(self.scores) == len(held.frames) else None
        scores = self.scores = held.scores(placement, known)
        if scores.max() < ACCEPT_SCORE:
            # In a zoom any later frame is also a crop of an earlier one: the whole-frame reading, when plain, is
            # the one to trust, and only without it is the picture placed as a crop.
            if not crops:
                return None
            nearest = int(np.argmax(scores))
            likeliest_at = held.times[nearest]  # (reading on below may put frames before it)
            # Some likeness as it is: maybe the frame turned by a few degrees (a rotation lowers a whole frame's
            # score to 0.6-0.9 here; a crop's or a half's whole-frame score is mostly lower, and aligning costs).
            upright = _derotated(placement, held, nearest) if scores[nearest] >= DEROTATE_FROM else None
            turned = held.scores(upright) if upright is not None else None
            turned_best = float(turned.max()) if turned is not None else -1.0
            # Turned back and certainly the picture: no crop placement fits better (measured on the rotated row:
            # turned back to 0.98 or more, its crop placements scored 0.70-0.89).
            read = None if turned_best >= CERTAIN_SCORE else _as_crop(self.greys, held, likeliest_at)
            # A crop placed nearly right also gains from a turn (the alignment takes its shift and scale for one):
            # turned back, the picture must fit better than as a crop to be read so.
            if (
                upright is not None
                and turned is not None
                and turned_best >= ACCEPT_SCORE
                and (read is None or turned_best > read[1].max())
            ):
                read = (upright, turned)
            if read is None:
                return None
            placement, scores = read
        best, same = held.best(scores)
        # A crop's place is free, so it finds some likeness on many frames: it must fit better to be believed.
        if scores.max() < (ACCEPT_SCORE if placement.as_whole else CROP_ACCEPT_SCORE):
            return None  # no frame is plainly the query's picture (a caption over it, a photo at an angle)
        if not placement.as_whole:
            # Placed only nearly right, a crop fits a slow zoom's or pan's frames seconds from its own almost as
            # well: its best frame is `at`, and the scene's span stays.
            return Moment(held.times[best], lo, hi, float(scores[best]), as_crop=True)
        if same[-1] - same[0] + 1 > len(same):
            # The same picture again further off (an animation cycle, a drawing held twice): any of its showings
            # may be the moment, so all of the scene's reach is read and from..to spans every one.
            scores = held.scores(placement, scores, whole_reach=True)
            best, same = held.best(scores)
        times, frame_s = held.times, held.reader.frame_s
        first, last = int(same[0]), int(same[-1])
        # The same picture up to an end of what was read, short of the scene's: a still shot, which the stored
        # frames (near-duplicates kept once, with the span they cover) say goes on to the scene's end.
        start = lo if first == 0 and times[0] > lo + frame_s else times[first]
        end = hi if last == len(times) - 1 and times[-1] < hi - frame_s else times[last] + frame_s
        return Moment(times[best], start, end, float(scores[best]))


def find_moment(
    readers: ReaderPool,
    video: Path,
    crop: Crop | None,
    query_rgb: np.ndarray,
    near: float,
    lo: float,
    hi: float,
    doubtful: bool = False,
) -> Moment | None:
    """exact_moment on a video file (a reader from the pool); None (and a warning logged) when it cannot be read."""
    try:
        with readers.reader(video, crop) as reader:
            return exact_moment(query_rgb, reader, near, lo, hi, doubtful)
    except (av.FFmpegError, OSError, ValueError) as exc:
        log.warning("exact moment: cannot read %s (%s)", video, exc)
        return None
