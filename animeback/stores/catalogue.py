"""The catalogue in LevelDB (plyvel): series, episodes, the frame id -> (episode, time span) map, and state."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import IndexBusyError
from .keyvalues import KeyValues, LevelDBValues, Writes

_FRAME = struct.Struct(">Qddd")  # episode, time, span start, span end
FRAME_ID_BITS = 22  # frame id = episode id << 22 | region << 19 | sample index: deterministic, so a retry
REGION_SHIFT = 19  # rewrites the same ids; region 0 (the whole frame) keeps the ids of indexes made before regions
MAX_SAMPLES = 1 << REGION_SHIFT  # sampled frames per episode (48 h at 3 fps)
CLEAR_BATCH = 100_000  # frame keys deleted per write when the catalogue is cleared
# Series numbers the catalogue assigns lie above every AniList id (under 1 million) and within a signed 32-bit
# int, which typed clients (pydantic's int, Java's int) hold.
ASSIGNED_SERIES_NUMBERS = range(1_000_000_000, 2_147_483_648)


def frame_id(episode: int, index: int, region: int = 0) -> int:
    """The id of the index-th sampled frame of an episode (region > 0: an entry for a part of it)."""
    return (episode << FRAME_ID_BITS) | (region << REGION_SHIFT) | index


def whole_frame_id(fid: int) -> int:
    """The id of the whole frame that an entry (whole frame or region of it) belongs to."""
    return fid & ~((1 << FRAME_ID_BITS) - MAX_SAMPLES)


class EpisodeStatus(enum.StrEnum):
    """Where an episode is in its life: indexing -> indexed | failed; removing while its vectors are deleted."""

    INDEXING = "indexing"
    INDEXED = "indexed"
    FAILED = "failed"
    REMOVING = "removing"


@dataclass
class EpisodeRecord:
    """What the catalogue knows of one episode file."""

    id: int
    series_id: str
    relpath: str
    status: EpisodeStatus
    size: int = 0
    mtime_ns: int = 0
    content_hash: str = ""
    episode: int | float | list | None = None
    duration: float = 0.0
    fps: float = 0.0
    width: int = 0
    height: int = 0
    crop: list | None = None
    preview: str | None = None
    moments: str | None = None  # its moment track, "previews/<id>.moments.mp4" (None in records made before)
    frames_sampled: int = 0
    frames_kept: int = 0
    vectors: int = 0  # frames_kept, or five times as many with features.half_frames (0 in records made before),
    # less those stored once in another episode
    vectors_elsewhere: int = 0  # vectors of repeated sequences (an opening, ...) that another episode holds
    model: str = ""
    error: str = ""
    indexed_at: float = 0.0
    sample_fps: float = 0.0  # the rate its frames were sampled at (0 in records made before it was recorded)
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.status = EpisodeStatus(self.status)  # records are stored as JSON, where the status is its value

    @property
    def filename(self) -> str:
        """The file's name as shown to people (bytes that are not UTF-8 shown as U+FFFD; relpath keeps them)."""
        name = self.relpath.split("/", 1)[-1]
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


class SegmentKind(enum.StrEnum):
    """What a repeated sequence is, told by where it lies in the two episodes that share it."""

    OPENING = "op"
    ENDING = "ed"
    RECAP = "recap"
    REPEAT = "repeat"


@dataclass(frozen=True)
class Repeat:
    """A stretch of one episode whose frames are stored once, in another episode of the series (the holder):
    `episode`'s [start, end] shows what the holder shows at the same times plus `offset`."""

    kind: SegmentKind
    episode: int
    start: float
    end: float
    holder: int
    offset: float

    def to_holder(self, time: float) -> float:
        """The holder's time for a time of this episode."""
        return time + self.offset

    def from_holder(self, time: float) -> float:
        """This episode's time for a time of the holder."""
        return time - self.offset


def _repeat_value(repeat: Repeat) -> bytes:
    return json.dumps(dataclasses.asdict(repeat)).encode()


def _repeat_from(raw: bytes) -> Repeat:
    fields = json.loads(raw)
    return Repeat(**{**fields, "kind": SegmentKind(fields["kind"])})


class Catalogue:
    """The records, on a key-value store: LevelDB on the indexing node (opened once per process and held: LevelDB
    locks its folder), or, on a web node, the copy the indexing node publishes in Milvus (stores/keyvalues.py)."""

    def __init__(self, values: KeyValues):
        self.values = values

    @classmethod
    def open_local(cls, path: Path) -> Catalogue:
        """The indexing node's catalogue in LevelDB at path (the store host publishes it: keyvalues.MirroredValues)."""
        import plyvel

        path.mkdir(parents=True, exist_ok=True)
        try:
            db = plyvel.DB(str(path), create_if_missing=True)
        except plyvel.IOError as exc:
            if "lock" in str(exc).lower():
                raise IndexBusyError(f"the catalogue {path} is in use by another AnimeBack process") from None
            raise
        return cls(LevelDBValues(db))

    def _get(self, key: bytes) -> bytes | None:
        return self.values.get_many([key])[0]

    def _put(self, key: bytes, value: bytes, sync: bool = True) -> None:
        self.values.write({key: value}, sync)

    # -- meta ---------------------------------------------------------------------------------------------
    def get_meta(self, name: str, default: Any = None) -> Any:
        raw = self._get(b"meta/" + name.encode())
        return default if raw is None else json.loads(raw)

    def put_meta(self, name: str, value: Any, sync: bool = True) -> None:
        self._put(b"meta/" + name.encode(), json.dumps(value).encode(), sync)

    # -- series -------------------------------------------------------------------------------------------
    def put_series(self, series_id: str, metadata: dict) -> None:
        self._put(b"series/" + series_id.encode(), json.dumps(metadata, ensure_ascii=False).encode())

    def get_series(self, series_id: str) -> dict | None:
        raw = self._get(b"series/" + series_id.encode())
        return None if raw is None else json.loads(raw)

    def series_ids(self) -> list[str]:
        return [k[len(b"series/") :].decode() for k, _ in self.values.scan([b"series/"])]

    def assign_series_number(self, series_id: str, number: int | None = None) -> int:
        """Give a series its integer id (trace.moe's `anilist`): `number` when given (an AniList id); else the one
        it has; else a new one, stable for the folder name (a hash, moved on past numbers other folders hold)."""
        current = self.series_number(series_id)
        if number is None and current is not None:
            return current
        if number is None:
            span = len(ASSIGNED_SERIES_NUMBERS)
            digest = int.from_bytes(hashlib.sha256(series_id.encode("utf-8", "surrogateescape")).digest()[:8], "big")
            offset = digest % span
            while self.series_with_number(ASSIGNED_SERIES_NUMBERS[offset]):
                offset = (offset + 1) % span
            number = ASSIGNED_SERIES_NUMBERS[offset]
        if number == current:
            return number
        writes: Writes = {}
        if current is not None:
            writes[b"series-by-number/%010d/" % current + series_id.encode()] = None
        writes[b"series-number/" + series_id.encode()] = str(number).encode()
        writes[b"series-by-number/%010d/" % number + series_id.encode()] = b""
        self.values.write(writes)
        return number

    def series_number(self, series_id: str) -> int | None:
        """The integer id of a series, None before `process` has assigned one."""
        return self.series_numbers([series_id]).get(series_id)

    def series_numbers(self, series_ids: list[str]) -> dict[str, int]:
        """The integer ids of several series (those that have one)."""
        found = self.values.get_many([b"series-number/" + series_id.encode() for series_id in series_ids])
        return {series_id: int(raw) for series_id, raw in zip(series_ids, found, strict=True) if raw is not None}

    def numbered_series(self) -> dict[str, int]:
        """Every series folder that has an integer id, with it."""
        prefix = b"series-number/"
        return {k[len(prefix) :].decode(): int(v) for k, v in self.values.scan([prefix])}

    def series_with_number(self, number: int) -> list[str]:
        """The series folders that carry an integer id (several when folders name one AniList entry)."""
        prefix = b"series-by-number/%010d/" % number
        return [k[len(prefix) :].decode() for k, _ in self.values.scan([prefix])]

    # -- episodes -----------------------------------------------------------------------------------------
    def new_episode_id(self) -> int:
        """A fresh episode id (ids are never reused, so stale vectors can never be mistaken for new ones)."""
        value = self.get_meta("next_episode_id", 1)
        self.put_meta("next_episode_id", value + 1)
        return value

    def put_episode(self, record: EpisodeRecord) -> None:
        """Write an episode record durably."""
        # ASCII escapes keep a file name that is not UTF-8 on disk (surrogate escapes in Python) exactly as it is.
        self._put(b"episode/%010d" % record.id, json.dumps(dataclasses.asdict(record)).encode())

    def get_episode(self, episode_id: int) -> EpisodeRecord | None:
        raw = self._get(b"episode/%010d" % episode_id)
        return None if raw is None else EpisodeRecord(**json.loads(raw))

    def get_episodes(self, episode_ids: list[int]) -> dict[int, EpisodeRecord]:
        """The records of several episodes in one read (those that exist)."""
        found = self.values.get_many([b"episode/%010d" % episode_id for episode_id in episode_ids])
        return {
            episode_id: EpisodeRecord(**json.loads(raw))
            for episode_id, raw in zip(episode_ids, found, strict=True)
            if raw
        }

    def episodes(self) -> Iterator[EpisodeRecord]:
        for _, raw in self.values.scan([b"episode/"]):
            yield EpisodeRecord(**json.loads(raw))

    def delete_episode(self, episode_id: int) -> None:
        """Remove an episode's frames, the repeats it points to, and then its record."""
        self.delete_frames(episode_id)
        self.delete_repeats(episode_id)
        self.values.write({b"episode/%010d" % episode_id: None})

    # -- frames -------------------------------------------------------------------------------------------
    def put_frames(self, frames: list[tuple[int, int, float, float, float]]) -> None:
        """Write (frame id, episode, time, start, end) tuples in one batch."""
        writes: Writes = {
            b"frame/" + fid.to_bytes(8, "big"): _FRAME.pack(episode, time, start, end)
            for fid, episode, time, start, end in frames
        }
        self.values.write(writes, sync=False)

    def _frame_keys(self, episode_id: int | None = None) -> Iterator[bytes]:
        if episode_id is None:
            return self.values.keys_between(b"frame/", b"frame0")  # "0" follows "/": every frame key
        start = b"frame/" + frame_id(episode_id, 0).to_bytes(8, "big")
        stop = b"frame/" + frame_id(episode_id + 1, 0).to_bytes(8, "big")
        return self.values.keys_between(start, stop)

    def frame_ids(self, episode_id: int) -> list[int]:
        """The ids of every entry written for an episode (what Milvus must hold for it)."""
        return [int.from_bytes(key[len(b"frame/") :], "big") for key in self._frame_keys(episode_id)]

    def delete_frames(self, episode_id: int) -> None:
        """Forget an episode's frame map."""
        self.values.write(dict.fromkeys(self._frame_keys(episode_id)))

    def count_frames(self, episode_id: int | None = None) -> int:
        """Entries in the frame map, of all episodes or of one."""
        return sum(1 for _ in self._frame_keys(episode_id))

    def delete_frame_ids(self, ids: list[int]) -> None:
        """Forget some entries of the frame map (an episode's frames stored once, in another episode)."""
        self.values.write({b"frame/" + fid.to_bytes(8, "big"): None for fid in ids})

    # -- repeated sequences -------------------------------------------------------------------------------
    # Kept both ways: by holder (what a search that hit the holder needs, one scan) and by the episode that points
    # to it (what its removal deletes).
    @staticmethod
    def _repeat_keys(repeat: Repeat) -> tuple[bytes, bytes]:
        at = b"%010d" % round(repeat.start * 1000)
        return (
            b"repeat/%010d/%010d/" % (repeat.holder, repeat.episode) + at,
            b"repeat-of/%010d/%010d/" % (repeat.episode, repeat.holder) + at,
        )

    def put_repeats(self, repeats: list[Repeat]) -> None:
        """Record stretches of episodes whose frames another episode holds."""
        self.values.write({key: _repeat_value(repeat) for repeat in repeats for key in self._repeat_keys(repeat)})

    def repeats_held_by(self, holder: int) -> list[Repeat]:
        """The stretches of other episodes that point to frames this episode holds."""
        return [_repeat_from(v) for _, v in self.values.scan([b"repeat/%010d/" % holder])]

    def repeats_of(self, episode_id: int) -> list[Repeat]:
        """The stretches of this episode whose frames other episodes hold, in time order."""
        found = [_repeat_from(v) for _, v in self.values.scan([b"repeat-of/%010d/" % episode_id])]
        return sorted(found, key=lambda r: r.start)

    def repeats_touching(self, episode_ids: list[int]) -> list[Repeat]:
        """Every stretch that points to or from these episodes (what a search's matches need, in one call)."""
        wanted = sorted(set(episode_ids))
        prefixes = [b"repeat/%010d/" % e for e in wanted] + [b"repeat-of/%010d/" % e for e in wanted]
        found = {_repeat_from(v) for _, v in self.values.scan(prefixes)} if wanted else set()
        return sorted(found, key=lambda r: (r.episode, r.start))

    def delete_repeats(self, episode_id: int) -> None:
        """Forget the stretches of this episode that point to other episodes."""
        self.values.write({key: None for repeat in self.repeats_of(episode_id) for key in self._repeat_keys(repeat)})

    def clear(self) -> None:
        """Forget every episode and frame (series metadata and settings stay)."""
        frames = list(self._frame_keys())
        for i in range(0, len(frames), CLEAR_BATCH):
            self.values.write(dict.fromkeys(frames[i : i + CLEAR_BATCH]))
        # on the indexing node's own store, where a scan may name any prefix
        records = self.values.scan([b"episode/", b"repeat/", b"repeat-of/"])
        self.values.write(dict.fromkeys(key for key, _ in records))

    def close(self) -> None:
        self.values.close()
