"""Repeated sequences: stretches of an episode (an opening, an ending, a recap) that another episode of the series
already holds, found from the vectors indexing computed anyway, so that their frames are stored once.

An episode's whole-frame vectors are searched among the series' other episodes. A frame whose near match lies at
time + d in another episode supports the offset d there; frames that support one offset in one episode, chained
with short gaps, make a piece, and pieces of one episode close together in time (a cut that skips or adds a few
seconds changes d) make a sequence. A sequence at least `repeats.min_seconds` long is a repeat: its supporting
frames are deleted from this episode, and `Repeat` records map its times to the holder's.
"""

from __future__ import annotations

import itertools
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from ..config import RepeatSettings
from ..stores import Hit, Repeat, SegmentKind
from ..stores.vectors import FrameSpan

OFFSET_BIN_S = 0.5  # offsets are voted for in bins this wide
MATCH_TOLERANCE_S = 0.5  # a frame supports an offset when its span, moved by it, meets the hit's within this
MAX_GAP_S = 2.0  # frames that do not match (a different credit line, a dropped frame) break no piece up to this long
CUT_GAP_S = 5.0  # pieces of one holder this close make one sequence (a cut a few seconds longer or shorter)
MIN_PIECE_FRAMES = 3  # a piece with fewer moving frames than this is chance
EDGE_SHARE = 0.3  # a sequence starting in the first 30% of an episode lies at its start; ending in the last, its end
STILL_SPAN_S = 0.75  # frames standing for longer than this (a still shot) do not pin the offset or the order down


@dataclass(frozen=True)
class FoundRepeats:
    """What detection found for one episode: the records to keep and the frame ids that need not be stored."""

    repeats: list[Repeat]
    frame_ids: list[int]


@dataclass
class _Piece:
    holder: int
    offset: float
    frames: list[int]  # indices into the episode's frames, in time order


def _meets(a0: float, a1: float, b0: float, b1: float) -> bool:
    return a0 - MATCH_TOLERANCE_S <= b1 and b0 - MATCH_TOLERANCE_S <= a1


def _position(start: float, end: float, duration: float) -> str:
    if duration <= 0:
        return "middle"
    if start <= EDGE_SHARE * duration:
        return "start"
    if end >= (1 - EDGE_SHARE) * duration:
        return "end"
    return "middle"


def classify(
    start: float, end: float, duration: float, holder_start: float, holder_end: float, holder_duration: float
) -> SegmentKind:
    """What a sequence is, from where it lies in both episodes: at the start of both an opening, at the end of both
    an ending, at the start of one only a recap (a previous episode's scene), anywhere else (or over most of both
    episodes: a copy) a repeat."""
    if end - start > 0.5 * duration and holder_end - holder_start > 0.5 * holder_duration:
        return SegmentKind.REPEAT  # most of both episodes: one is a copy of the other, not their opening
    here = _position(start, end, duration)
    there = _position(holder_start, holder_end, holder_duration)
    if here == there == "start":
        return SegmentKind.OPENING
    if here == there == "end":
        return SegmentKind.ENDING
    if "start" in (here, there):
        return SegmentKind.RECAP
    return SegmentKind.REPEAT


def _support(frames: Sequence[FrameSpan], hits: Sequence[Sequence[Hit]], holder: int, offset: float, free) -> dict:
    """For each free frame that supports `offset` in `holder`, its best such hit."""
    found = {}
    for i, (frame, frame_hits) in enumerate(zip(frames, hits)):
        if i not in free:
            continue
        matching = [
            h
            for h in frame_hits
            if h.episode == holder and _meets(frame.start + offset, frame.end + offset, h.start, h.end)
        ]
        if matching:
            found[i] = max(matching, key=lambda h: (h.similarity, -abs(h.time - frame.time - offset)))
    return found


def _chain(frames: Sequence[FrameSpan], indices: list[int]) -> list[list[int]]:
    """Indices of frames in time order, cut where a stretch of more than MAX_GAP_S has none."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and frames[i].start - frames[runs[-1][-1]].end <= MAX_GAP_S:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def _offset(frames: Sequence[FrameSpan], support: dict, run: list[int], guess: float) -> float:
    """The offset a piece's moving frames agree on (still frames match anywhere in their span)."""
    moving = [
        support[i].time - frames[i].time
        for i in run
        if frames[i].end - frames[i].start <= STILL_SPAN_S and support[i].end - support[i].start <= STILL_SPAN_S
    ]
    return round(statistics.median(moving), 3) if moving else guess


def find_repeats(
    episode: int,
    duration: float,
    frames: Sequence[FrameSpan],
    hits: Sequence[Sequence[Hit]],
    durations: dict[int, float],
    settings: RepeatSettings,
) -> FoundRepeats:
    """The repeated sequences of an episode, given its whole frames (in time order), each frame's nearest frames in
    the series' other episodes, and those episodes' durations."""
    strong = [[h for h in frame_hits if h.similarity >= settings.similarity] for frame_hits in hits]
    votes: Counter = Counter()
    for frame, frame_hits in zip(frames, strong):
        for key in {(h.episode, round((h.time - frame.time) / OFFSET_BIN_S)) for h in frame_hits}:
            votes[key] += 1
    free = set(range(len(frames)))
    pieces: list[_Piece] = []
    for (holder, bin_), count in votes.most_common():
        if count < MIN_PIECE_FRAMES:
            break
        guess = bin_ * OFFSET_BIN_S
        support = _support(frames, strong, holder, guess, free)
        for run in _chain(frames, sorted(support)):
            # Still frames match any moment of a look-alike still: only moving frames show the same order.
            moving = sum(1 for i in run if frames[i].end - frames[i].start <= STILL_SPAN_S)
            if moving >= MIN_PIECE_FRAMES:
                pieces.append(_Piece(holder, _offset(frames, support, run, guess), run))
                free.difference_update(run)
    repeats: list[Repeat] = []
    frame_ids: list[int] = []
    for sequence in _sequences(frames, pieces):
        start, end = frames[sequence[0].frames[0]].start, frames[sequence[-1].frames[-1]].end
        if end - start < settings.min_seconds:
            continue
        holder = sequence[0].holder
        kind = classify(
            start,
            end,
            duration,
            start + sequence[0].offset,
            end + sequence[-1].offset,
            durations.get(holder, 0.0),
        )
        # The pieces' stretches meet halfway across the gaps between them: the whole sequence maps to the holder,
        # also where frames did not match (credits that differ), which stay stored here.
        bounds = [start]
        for before, after in itertools.pairwise(sequence):
            bounds.append((frames[before.frames[-1]].end + frames[after.frames[0]].start) / 2)
        bounds.append(end)
        for piece, piece_start, piece_end in zip(sequence, bounds, bounds[1:]):
            repeats.append(Repeat(kind, episode, piece_start, piece_end, holder, piece.offset))
            frame_ids += [frames[i].id for i in piece.frames]
    return FoundRepeats(sorted(repeats, key=lambda r: r.start), sorted(frame_ids))


def _sequences(frames: Sequence[FrameSpan], pieces: list[_Piece]) -> list[list[_Piece]]:
    """Pieces grouped into sequences: one holder's pieces, in time order, no more than CUT_GAP_S apart both here and
    in the holder (a piece that lies elsewhere in the holder is a look-alike, not a cut of the same sequence)."""
    grouped: list[list[_Piece]] = []
    for piece in sorted(pieces, key=lambda p: (p.holder, frames[p.frames[0]].start)):
        last = grouped[-1][-1] if grouped else None
        if last is None or last.holder != piece.holder:
            grouped.append([piece])
            continue
        start, last_end = frames[piece.frames[0]].start, frames[last.frames[-1]].end
        holder_gap = (start + piece.offset) - (last_end + last.offset)
        if start - last_end <= CUT_GAP_S and -CUT_GAP_S <= holder_gap <= CUT_GAP_S:
            grouped[-1].append(piece)
        else:
            grouped.append([piece])
    return grouped
