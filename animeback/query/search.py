"""Search: find the picture in a screenshot, embed its regions, ask Milvus, group hits into scenes."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import SearchSettings
from ..imaging import Box, is_cropped, is_uninformative
from ..index import Index
from ..model.pixels import to_model_input
from ..stores import EpisodeRecord, EpisodeStatus, Hit, Repeat, SegmentKind
from ..stores.catalogue import whole_frame_id
from ..stores.rpc import AnyCatalogue
from .decode import decode_query
from .refine import UNSURE_REACH_S, Crop, Moment, ReaderPool, find_moment
from .regions import QueryRegion, first_regions, further_regions, window_aspects

# Both below the model's 1% false-match threshold (Embedder.false_match_threshold; 0.755 for the default model),
# since a trained model's similarities lie lower (measured: animeback-v3's threshold 0.641, and its half frames found
# on the frames 79.3% -> 84.3% with these margins below its threshold instead of below the default model's).
# Scenes this far below it get no exact moment: no frame of theirs is likely the query's picture (with the default
# model, the least similar right answers, half frames, scored 0.69 on the robustness benchmark).
REFINE_MIN_BELOW_THRESHOLD = 0.155
# Under the threshold a match is more likely another picture than the query's (with the default model, a half frame
# or a shrunk crop of its own frame also scores 0.69-0.75): its frames are read only when one near its moment is
# roughly like the query (refine.PLAUSIBLE_SCORE), since most such scenes are not-indexed pictures.
DOUBTFUL_BELOW_THRESHOLD = 0.005
# A scene whose frames do not show the picture lets the next scene be read in its place, up to this many, while
# within this of the best one's similarity: in a long shot or a repeated pose the vectors rank another scene of the
# same episode first by a few thousandths (measured: 6 of the half-frame row's 18 misses, the right scene second).
MAX_STAND_INS = 2
STAND_IN_MARGIN = 0.05
# Frames whose similarity to the query is within this of the best one's are tied for "the moment".
AT_TIE = 0.005


@dataclass(frozen=True)
class Occurrence:
    """Another episode that shows the same moment: a repeated opening, ending or recap (times in seconds)."""

    episode_id: int
    filename: str
    episode: int | float | list | None
    duration: float
    start: float
    at: float
    end: float


@dataclass
class SceneMatch:
    """One answer: an episode and the moment in it, trace.moe style (times in seconds)."""

    series_id: str
    episode_id: int
    filename: str
    episode: int | float | list | None
    duration: float
    start: float  # "from"
    at: float
    end: float  # "to"
    similarity: float
    series_number: int | None = None  # the series' integer id (AniList's, or the catalogue's); None before process
    segment: SegmentKind | None = None  # the moment lies in a sequence several episodes share (an opening, ...)
    occurrences: list[Occurrence] = field(default_factory=list)  # the other episodes that show it, in order

    @property
    def place(self) -> Occurrence:
        """The episode and moment of this match, as an occurrence."""
        return Occurrence(self.episode_id, self.filename, self.episode, self.duration, self.start, self.at, self.end)

    def moved_to(self, place: Occurrence, **changes) -> SceneMatch:
        """This match answered with another episode and moment (a repeated sequence's)."""
        return dataclasses.replace(
            self,
            episode_id=place.episode_id,
            filename=place.filename,
            episode=place.episode,
            duration=place.duration,
            start=place.start,
            at=place.at,
            end=place.end,
            **changes,
        )


@dataclass
class SearchOutcome:
    """All answers to one query, best first, with the number of frames searched and the region used."""

    frame_count: int
    matches: list[SceneMatch]
    box: Box | None = None
    variants: list[str] = field(default_factory=list)
    uninformative: bool = False  # the picture is one flat tone (black, a fade, a blank card): nothing to match


def informative(regions: list[QueryRegion]) -> list[QueryRegion]:
    """The regions that show something (not one flat tone, which would match any blank frame alike)."""
    return [r for r in regions if not is_uninformative(r.pixels)]


def group_hits(hits: list[Hit], gap: float, tolerance: float, limit: int) -> list[tuple[Hit, float, float]]:
    """Group hits into scenes, best first; returns (best hit, from, to) for at most `limit` scenes.

    A scene is seeded by the best unused hit. Hits of the same episode scoring within `tolerance` of it are
    "as good": those chained to it in time (each within `gap` seconds of the scene so far) make up the scene,
    and from..to is the union of their spans (a long still shot stored as several frames is one scene
    covering all of it). Weaker hits of the episode inside that range (or within `gap` of it) are absorbed.
    """
    groups: list[tuple[Hit, float, float]] = []
    used: set[int] = set()
    by_episode: dict[int, list[Hit]] = {}
    for h in sorted(hits, key=lambda h: h.time):
        by_episode.setdefault(h.episode, []).append(h)
    for best in sorted(hits, key=lambda h: -h.similarity):
        if best.id in used:
            continue
        lo, hi = best.start, best.end
        peers = [h for h in by_episode[best.episode] if h.id not in used]
        grown = True
        while grown:  # chain equally good hits that touch the scene (within gap)
            grown = False
            for h in peers:
                if (
                    h.similarity >= best.similarity - tolerance
                    and h.start - gap <= hi
                    and h.end + gap >= lo
                    and (h.start < lo or h.end > hi)
                ):
                    lo, hi, grown = min(lo, h.start), max(hi, h.end), True
        for h in peers:
            if h.start - gap <= hi and h.end + gap >= lo:
                used.add(h.id)
        used.add(best.id)
        groups.append((best, lo, hi))
        if len(groups) == limit:
            break
    return groups


def moment(best: Hit, lo: float, hi: float, hits: list[Hit], tie: float) -> float:
    """The time to report for a scene: in a still or slow shot many stored frames score alike, and the middle one
    of those tied with the best (within `tie`) is closer to any moment of the shot than the first one."""
    tied = sorted(
        h.time
        for h in hits
        if h.episode == best.episode and lo <= h.time <= hi and h.similarity >= best.similarity - tie
    )
    return tied[len(tied) // 2] if tied else best.time


def refine_starts(match: SceneMatch, hits: list[Hit]) -> list[float]:
    """Where to look for a match's exact moment, in order: its reported moment, then its episode's best hit within
    its span when that lies further off than the frames read around the first (in a slow zoom or pan many stored
    frames tie, the middle one is reported, and the query's frame may be the best hit seconds away)."""
    inside = [h for h in hits if h.episode == match.episode_id and match.start <= h.time <= match.end]
    best = max(inside, key=lambda h: h.similarity, default=None)
    if best is None or abs(best.time - match.at) <= UNSURE_REACH_S:
        return [match.at]
    return [match.at, best.time]


# A full query matched through one half of another frame scores near that frame's whole-frame match by chance
# more often than a real whole-frame match does (measured: letterboxed and pillarboxed queries matched a neighbour
# shot's half); half-entry hits count this much less, so at equal evidence the whole frame wins.
HALF_ENTRY_PENALTY = 0.015
# A coded half's similarity is estimated from 256 bits, so its error reaches a chance look-alike's lead: with
# 0.055, not-indexed screenshots matched coded halves and the 1% false-match threshold rose from 0.755 to 0.790
# (photo of screen 96.4% -> 93.6%, combo 93.6% -> 89.3% at it); with 0.09 it is 0.758 and half frames keep 96.4%
# (benchmarks/README.md, "Binary half-frame entries").
HALF_CODE_PENALTY = 0.09


def merge_variant_hits(per_variant: list[list[Hit]]) -> list[Hit]:
    """One list of hits from several query variants, keeping each frame's best similarity (over the frame's
    entries: the whole frame and, with features.half_frames, its halves less HALF_ENTRY_PENALTY), under the whole
    frame's id."""
    best: dict[int, Hit] = {}
    for hits in per_variant:
        for h in hits:
            fid = whole_frame_id(h.id)
            penalty = HALF_CODE_PENALTY if h.coded else HALF_ENTRY_PENALTY if fid != h.id else 0.0
            similarity = h.similarity - penalty
            if fid not in best or similarity > best[fid].similarity:
                best[fid] = dataclasses.replace(h, id=fid, similarity=similarity)
    return list(best.values())


def episode_order(place: Occurrence) -> tuple:
    """Episodes in the order a season runs: by number (the first of a range), then the unnumbered by file name."""
    number = place.episode[0] if isinstance(place.episode, list) and place.episode else place.episode
    if isinstance(number, (int, float)) and not isinstance(number, bool):
        return (0, float(number), place.filename)
    return (1, 0.0, place.filename)


def shown_in(repeat: Repeat, place: Occurrence, margin: float, record: EpisodeRecord) -> Occurrence:
    """Where the holder's moment `place` lies in an episode that points to it, inside the stretch it repeats."""
    start = max(repeat.start - margin, repeat.from_holder(place.start), 0.0)
    end = min(repeat.end + margin, repeat.from_holder(place.end), record.duration)
    at = min(max(repeat.from_holder(place.at), start), end)
    return Occurrence(record.id, record.filename, record.episode, record.duration, start, at, end)


def _distinct(matches: Iterable[SceneMatch]) -> list[SceneMatch]:
    """Matches less those whose moment a better one already gives as one of its occurrences."""
    kept: list[SceneMatch] = []
    for match in matches:
        if not any(
            place.episode_id == match.episode_id and place.start <= match.at <= place.end
            for other in kept
            for place in (other.place, *other.occurrences)
        ):
            kept.append(match)
    return kept


class _RepeatLinks:
    """The repeated stretches around a search's matched episodes, read from the catalogue once per search."""

    def __init__(self, catalogue: AnyCatalogue, episode_ids: Iterable[int]):
        self.catalogue = catalogue
        self.fetched: set[int] = set()
        self.held: dict[int, list[Repeat]] = {}
        self.pointing: dict[int, list[Repeat]] = {}
        self.fetch(episode_ids)

    def fetch(self, episode_ids: Iterable[int]) -> None:
        wanted = sorted(set(episode_ids) - self.fetched)
        if not wanted:
            return
        for repeat in self.catalogue.repeats_touching(wanted):
            for by, key in ((self.held, repeat.holder), (self.pointing, repeat.episode)):
                if repeat not in by.setdefault(key, []):
                    by[key].append(repeat)
        self.fetched.update(wanted)

    def held_by(self, holder: int) -> list[Repeat]:
        """The stretches of other episodes that point to frames this one holds."""
        self.fetch([holder])
        return self.held.get(holder, [])

    def of(self, episode_id: int) -> list[Repeat]:
        """The stretches of this episode whose frames another one holds."""
        self.fetch([episode_id])
        return self.pointing.get(episode_id, [])


class Searcher:
    """Answers queries against an opened Index."""

    def __init__(self, index: Index, settings: SearchSettings | None = None):
        """A searcher of the index, with its installation's search settings unless others are given."""
        index.check_model()  # once, not per query: the model of an open index does not change under it
        self.index = index
        self.settings = settings or index.settings.search
        self.vectors_per_frame = index.parameters().vectors_per_frame
        self.readers = ReaderPool()  # of the videos the exact moment is read from
        threshold = index.embedder.false_match_threshold
        self.refine_min_similarity = threshold - REFINE_MIN_BELOW_THRESHOLD
        self.doubtful_similarity = threshold - DOUBTFUL_BELOW_THRESHOLD

    def series_folders(self, series: str) -> list[str]:
        """The series folders a filter names: those with that integer id (AniList's or the catalogue's) when it is
        a number, else the folder of that name."""
        if series.isascii() and series.isdigit():
            return self.index.catalogue.series_with_number(int(series)) if len(series) <= 10 else []
        return [series]

    def _margin(self, record: EpisodeRecord) -> float:
        """How far from..to reaches beyond the matched frames' spans: a query taken between two samples may look
        most like either, so one sampling interval (of the rate this episode was sampled at), to hold the moment."""
        return 1.0 / (record.sample_fps or self.index.settings.media.sample_fps)

    def _spread(self, match: SceneMatch, records: dict[int, EpisodeRecord | None], links: _RepeatLinks) -> SceneMatch:
        """A match inside a sequence that other episodes repeat (its frames are stored once, here): answered with
        the first episode that shows it, the others as occurrences, and what the sequence is."""
        catalogue = self.index.catalogue
        holder = records[match.episode_id]
        assert holder is not None
        margin = self._margin(holder)
        repeats = [
            r
            for r in links.held_by(match.episode_id)
            if r.to_holder(r.start) - margin <= match.at <= r.to_holder(r.end) + margin
        ]
        if not repeats:
            # The moment may lie in a stretch of this episode whose other frames another episode holds (credits
            # that differ kept some of them here): answered as that episode's moment, with all that show it.
            own = [r for r in links.of(match.episode_id) if r.start - margin <= match.at <= r.end + margin]
            if not own:
                return match
            pointer = own[0]
            if pointer.holder not in records:
                records[pointer.holder] = catalogue.get_episode(pointer.holder)
            holder = records[pointer.holder]
            if holder is None or holder.status != EpisodeStatus.INDEXED:
                return match
            match = match.moved_to(
                Occurrence(
                    holder.id,
                    holder.filename,
                    holder.episode,
                    holder.duration,
                    max(pointer.to_holder(match.start), 0.0),
                    pointer.to_holder(match.at),
                    min(pointer.to_holder(match.end), holder.duration),
                )
            )
            # the holder's stretches include `pointer`, which covers the moved moment: this recursion is one deep
            return self._spread(match, records, links)
        places = {match.episode_id: match.place}
        wanted = sorted({r.episode for r in repeats} - records.keys())
        found = catalogue.get_episodes(wanted) if wanted else {}
        records.update({episode_id: found.get(episode_id) for episode_id in wanted})
        for repeat in repeats:
            record = records[repeat.episode]
            if record is not None and record.status == EpisodeStatus.INDEXED and repeat.episode not in places:
                places[repeat.episode] = shown_in(repeat, match.place, margin, record)
        first, *others = sorted(places.values(), key=episode_order)
        kinds = [r.kind for r in repeats]
        return match.moved_to(first, segment=max(set(kinds), key=kinds.count), occurrences=others)

    def _frames_source(self, record: EpisodeRecord) -> tuple[Path, Crop | None] | None:
        """The video whose frames give a scene's exact moment, with the picture's place in it: the episode's moment
        track (the picture alone), else (an episode indexed before there were moment tracks) its preview, else its
        own file, both inside the black bars its record gives."""
        settings = self.index.settings
        if record.moments and (track := settings.preview_path(record.moments)).is_file():
            return track, None
        crop = None
        if record.crop and record.width and record.height:
            x, y, w, h = record.crop
            crop = Crop(x / record.width, y / record.height, w / record.width, h / record.height)
        for video in (
            settings.preview_path(record.preview) if record.preview else None,
            settings.library_path / record.relpath,
        ):
            if video is not None and video.is_file():
                return video, crop
        return None

    def _exact_moment(
        self, match: SceneMatch, record: EpisodeRecord, picture: np.ndarray, hits: list[Hit]
    ) -> Moment | None:
        """The frame on screen and the span showing the same picture, for a scene search found (None: keep the
        stored frames' moment, for a video that cannot be read or a picture that cannot be placed on it)."""
        source = self._frames_source(record)
        if source is None:
            return None
        video, crop = source
        doubtful = match.similarity < self.doubtful_similarity
        for near in refine_starts(match, hits):
            found = find_moment(self.readers, video, crop, picture, near, match.start, match.end, doubtful)
            if found is not None:
                return found
        return None

    def _refined(
        self, matches: list[SceneMatch], records: dict[int, EpisodeRecord], picture: np.ndarray, hits: list[Hit]
    ) -> list[SceneMatch]:
        """The best `search.refine` scenes with their exact moment, a scene whose frames do not show the picture making
        room for the next nearly as similar one; ranked again, since a picture found on the frames is surer."""
        wanted = self.settings.refine
        read = refined = 0
        matches = list(matches)
        best = matches[0].similarity if matches else 0.0  # (before a refined scene's is raised)
        for i, match in enumerate(matches):
            if refined == wanted or read == wanted + MAX_STAND_INS:
                break
            if i >= wanted and match.similarity < best - STAND_IN_MARGIN:
                break
            if match.similarity < self.refine_min_similarity:
                continue  # most likely a false match: decoding its frames would cost the most and give nothing
            read += 1
            moment_found = self._exact_moment(match, records[match.episode_id], picture, hits)
            if moment_found is not None:
                refined += 1
                # The picture found on the episode's frames pixel for pixel is surer than any vector's likeness: a half
                # frame's vector meets its whole frame's at 0.7, under the false-match threshold, and no not-indexed
                # screenshot's picture was found on a frame (benchmarks/README.md, "Found on the frames").
                matches[i] = dataclasses.replace(
                    match,
                    at=moment_found.at,
                    start=moment_found.start,
                    end=moment_found.end,
                    similarity=max(match.similarity, moment_found.likeness),
                )
        return sorted(matches, key=lambda m: -m.similarity)  # (stable: a refined scene may now outrank one above it)

    def _search_regions(self, regions: list[QueryRegion], series: Sequence[str] | None) -> list[list[Hit]]:
        """The nearest frames of each region's picture."""
        if not regions:
            return []
        vectors = self.index.embedder.embed(np.stack([to_model_input(r.pixels) for r in regions]))
        # With half-frame entries a frame has several; ask for as many more, so as many frames are seen.
        return self.index.vectors.search(vectors, self.settings.candidates * self.vectors_per_frame, series)

    def search_bytes(self, data: bytes, **options) -> SearchOutcome:
        """Decode and search query bytes."""
        query = decode_query(self.index.settings.search, data)
        return self.search(query.rgb, scale=query.scale, **options)

    def search(
        self,
        rgb: np.ndarray,
        cut_borders: bool | None = None,
        series: Sequence[str] | None = None,
        limit: int | None = None,
        scale: float = 1.0,
    ) -> SearchOutcome:
        """Top scenes for an RGB image, within the given series folders if any; with cut_borders, the picture found
        inside borders or chrome too. `scale` is the query's pixels per pixel of `rgb` (a shrunk decode), so that
        the region is reported in the query's."""
        s = self.settings
        cut_borders = s.cut_borders if cut_borders is None else cut_borders
        limit = min(limit or s.max_results, s.max_results)
        stats = self.index.catalogue.get_meta("stats") or {}
        aspects = window_aspects(stats.get("aspects", ()))
        regions = informative(first_regions(rgb, cut_borders))
        per_variant = self._search_regions(regions, series)
        if max((h.similarity for hits in per_variant for h in hits[:1]), default=0.0) < s.confident:
            # Not the picture as sent: maybe a mirror image, or a picture inside a window or a photo of a screen.
            further = informative(further_regions(rgb, regions, cut_borders, s.mirror, aspects))
            regions += further
            per_variant += self._search_regions(further, series)
        if not regions:  # any blank frame would match any other: no answer is better than a random one
            return SearchOutcome(stats.get("vectors", 0), [], None, [], uninformative=True)
        hits = merge_variant_hits(per_variant)
        # The region reported is the one whose vector found the best match.
        best_variant = max(range(len(regions)), key=lambda i: max((h.similarity for h in per_variant[i]), default=-1))
        box = regions[best_variant].box
        groups = group_hits(hits, s.group_gap_s, s.span_tolerance, limit)
        matches = []
        found = self.index.catalogue.get_episodes(sorted({best.episode for best, _, _ in groups})) if groups else {}
        records: dict[int, EpisodeRecord | None] = dict(found)
        for best, lo, hi in groups:
            record = found.get(best.episode)
            if record is None or record.status != EpisodeStatus.INDEXED:
                continue  # an episode being removed or re-indexed right now
            margin = self._margin(record)
            matches.append(
                SceneMatch(
                    best.series,
                    best.episode,
                    record.filename,
                    record.episode,
                    record.duration,
                    max(0.0, lo - margin),
                    moment(best, lo, hi, hits, AT_TIE),
                    min(hi + margin, record.duration),
                    float(np.clip(best.similarity, 0.0, 1.0)),
                )
            )
        matches = self._refined(matches, found, regions[best_variant].pixels, hits)
        links = _RepeatLinks(self.index.catalogue, (m.episode_id for m in matches))
        matches = _distinct(self._spread(m, records, links) for m in matches)
        numbers = self.index.catalogue.series_numbers(sorted({m.series_id for m in matches})) if matches else {}
        for m in matches:
            m.series_number = numbers.get(m.series_id)
        region = box.scaled(scale) if is_cropped(box, rgb.shape) else None
        return SearchOutcome(stats.get("vectors", 0), matches, region, [r.name for r in regions])
