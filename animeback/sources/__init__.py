"""Where episodes come from: a small interface that the downloader drives (bilibili is one implementation).

A source turns a reference (an id or URL the user queued) into a season with its metadata and episode list,
and an episode into the media streams to fetch. Everything else (selection, resumable downloads, muxing,
atomic placement, indexing) is the downloader's and the same for every source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class EpisodeInfo:
    """One episode of a season, as the source lists it."""

    id: int
    number: int | float | None
    title: str
    duration: float  # seconds


@dataclass
class SeasonInfo:
    """A season: its library folder name (series id), titles and other metadata, and its episodes."""

    series_id: str
    title: str
    titles: dict
    cover: str
    intro: str
    episodes: list[EpisodeInfo]
    extra: dict = field(default_factory=dict)

    def metadata(self) -> dict:
        """What goes into `<series id>/series.json` (and the catalogue): titles, cover, intro, episode list."""
        return {
            "title": self.title,
            "titles": self.titles,
            "cover": self.cover,
            "intro": self.intro,
            "episodes": [
                {"id": e.id, "number": e.number, "title": e.title, "duration": e.duration} for e in self.episodes
            ],
            **self.extra,
        }


@dataclass(frozen=True)
class MediaStream:
    """One file to download: its URLs (first is preferred) and what it holds."""

    urls: tuple[str, ...]
    kind: str  # "video" | "audio"
    description: str


@dataclass(frozen=True)
class EpisodeStreams:
    """The streams of one episode at the chosen quality, and a note when it is below the wanted one."""

    video: MediaStream
    audio: MediaStream | None
    quality: str
    note: str = ""
    headers: dict = field(default_factory=dict)  # to send when downloading (e.g. Referer)


class Source(Protocol):
    """What the downloader needs of a source."""

    name: str

    def season(self, reference: str) -> SeasonInfo:
        """The season a queued reference names (raises SourceError)."""

    def streams(self, season: SeasonInfo, episode: EpisodeInfo, quality: int) -> EpisodeStreams:
        """The media of an episode at the best quality available up to `quality` (raises SourceError)."""
