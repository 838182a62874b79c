"""`download-bilibili`: fetch the queued seasons into the library, resumably, and never leave a half file there.

For each queued season: its metadata goes to `<library>/<series id>/series.json` (what `process` and the API's
anilistInfo read) and to the catalogue; each selected episode that is not in the library yet is fetched:
1. its streams (DASH video and audio) download into `data_dir/downloads/` as `.part` files, resuming with an
   HTTP Range request after an interruption, retried with back-off, and checked against the announced size;
2. ffmpeg muxes them (stream copy, no re-encode) into a hidden temporary file next to the final one;
3. the file is flushed to disk and renamed into place: the library only ever sees complete episodes.
A failed season or episode is reported and the rest of the queue goes on.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import urllib3
from tqdm import tqdm

from ..config import Settings
from ..errors import AnimeBackError, ConfigError, SourceError
from ..stores.rpc import AnyCatalogue
from . import EpisodeInfo, EpisodeStreams, MediaStream, SeasonInfo, Source

log = logging.getLogger(__name__)

CHUNK = 256 * 1024
_UNSAFE = re.compile(r'[\\/:*?"<>|\x00-\x1f]+')


@dataclass(frozen=True)
class QueueEntry:
    """One queued season and which of its episodes to fetch."""

    reference: str
    episodes: str | list  # "all", "3-5", "1,3,7-9", or a list of numbers

    def wants(self, episode: EpisodeInfo) -> bool:
        """Whether the selection includes this episode (by its number)."""
        if self.episodes == "all":
            return True
        return episode.number is not None and float(episode.number) in _selection(self.episodes)


def _selection(spec: str | list) -> set[float]:
    if isinstance(spec, list):
        return {float(n) for n in spec}
    chosen: set[float] = set()
    for part in str(spec).split(","):
        low, _, high = part.strip().partition("-")
        chosen.update(float(n) for n in range(int(low), int(high or low) + 1))
    return chosen


def parse_queue(items: list) -> list[QueueEntry]:
    """A queue as configured (bilibili.queue) or given on the command line, checked (raises ConfigError naming
    the bad entry)."""
    entries = []
    for i, item in enumerate(items):
        where = f"bilibili.queue[{i}]"
        if isinstance(item, str):
            item = {"season": item}
        if not isinstance(item, dict) or not isinstance(item.get("season"), str) or set(item) - {"season", "episodes"}:
            raise ConfigError(f'{where} must be a season id/URL or {{"season": ..., "episodes": ...}}; got {item!r}')
        episodes = item.get("episodes", "all")
        try:
            if episodes != "all":
                if isinstance(episodes, list):
                    if not all(isinstance(n, (int, float)) and not isinstance(n, bool) for n in episodes):
                        raise ValueError
                else:
                    _selection(episodes)
        except (TypeError, ValueError):
            raise ConfigError(
                f'{where}.episodes must be "all", a range like "1-12", a list like "1,3,7-9" '
                f"or [1, 3]; got {episodes!r}"
            ) from None
        entries.append(QueueEntry(item["season"], episodes))
    return entries


@dataclass
class DownloadReport:
    """What one `download-bilibili` run did."""

    seasons: int = 0
    downloaded: int = 0
    skipped: int = 0
    failed: int = 0
    bytes: int = 0
    indexed: int = 0
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = (
            f"{self.seasons} season(s): downloaded {self.downloaded} episode(s) ({self.bytes / 2**20:.1f} MiB), "
            f"skipped {self.skipped} already in the library, failed {self.failed}"
        )
        return text + (f"; indexed {self.indexed}" if self.indexed else "")


def episode_filename(season: SeasonInfo, episode: EpisodeInfo) -> str:
    """`<season title> - 05.mp4`: a name whose episode number `process` parses back."""
    title = _UNSAFE.sub(" ", season.title).strip(" .") or season.series_id
    number = episode.number
    label = f"{number:02d}" if isinstance(number, int) else str(number) if number is not None else str(episode.id)
    return f"{title[:120]} - {label}.mp4"


def write_atomically(path: Path, data: bytes) -> None:
    """Write a small file so that readers see the old or the new content, never a mix."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


class Downloader:
    """Fetches queued seasons from a source into the library."""

    def __init__(self, settings: Settings, source: Source, progress: bool = True, on_episode=None):
        self.settings, self.source, self.progress = settings, source, progress
        self.on_episode = on_episode  # called with each episode file that lands (e.g. to index it)
        self.http = urllib3.PoolManager(
            retries=False, timeout=urllib3.Timeout(connect=15, read=60), maxsize=2 * settings.bilibili.parallel
        )
        self.parts = settings.data_path / "downloads"
        self._lock = threading.Lock()

    def run(self, queue: list[QueueEntry], report: DownloadReport | None = None) -> DownloadReport:
        """Fetch every queued season; failures are reported and the queue goes on."""
        from ..stores.host import connect

        report = report or DownloadReport()
        store = connect(self.settings)
        try:
            self._run(queue, report, store.catalogue)
        finally:
            store.close()
        return report

    def _run(self, queue: list[QueueEntry], report: DownloadReport, catalogue: AnyCatalogue) -> None:
        for entry in queue:
            try:
                season = self._retry(
                    lambda reference=entry.reference: self.source.season(reference), f"season {entry.reference}"
                )
            except AnimeBackError as exc:
                self._fail(report, exc.message)
                continue
            report.seasons += 1
            folder = self.settings.library_path / season.series_id
            folder.mkdir(parents=True, exist_ok=True)
            write_atomically(
                folder / "series.json", json.dumps(season.metadata(), ensure_ascii=False, indent=2).encode()
            )
            catalogue.put_series(season.series_id, season.metadata())
            wanted = [e for e in season.episodes if entry.wants(e)]
            log.info(
                "%s (%s): %d episode(s) selected of %d",
                season.title,
                season.series_id,
                len(wanted),
                len(season.episodes),
            )
            todo = []
            for episode in wanted:
                if (folder / episode_filename(season, episode)).exists():
                    report.skipped += 1
                else:
                    todo.append(episode)
            with ThreadPoolExecutor(max_workers=self.settings.bilibili.parallel) as pool:
                for outcome in pool.map(lambda e, s=season: self._episode_safely(s, e), todo):
                    if isinstance(outcome, str):
                        self._fail(report, outcome)
                    else:
                        report.downloaded += 1
                        report.bytes += outcome

    def _fail(self, report: DownloadReport, message: str) -> None:
        log.error("%s", message)
        report.failed += 1
        report.errors.append(message)

    def _episode_safely(self, season: SeasonInfo, episode: EpisodeInfo) -> int | str:
        """Bytes downloaded, or the error message."""
        try:
            return self._episode(season, episode)
        except AnimeBackError as exc:
            return exc.message
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                return f"{_what(season, episode)}: disk full while writing {exc.filename or ''}"
            return f"{_what(season, episode)}: {exc.strerror or exc}"

    def _episode(self, season: SeasonInfo, episode: EpisodeInfo) -> int:
        what = _what(season, episode)
        streams: EpisodeStreams = self._retry(
            lambda: self.source.streams(season, episode, self.settings.bilibili.quality), what
        )
        if streams.note:
            log.warning("%s: %s", what, streams.note)
        folder = self.parts / self.source.name / season.series_id
        folder.mkdir(parents=True, exist_ok=True)
        files, total = [], 0
        for stream in (streams.video, streams.audio):
            if stream is None:
                continue
            part = folder / f"{episode.id}.{stream.kind}.{streams.quality}.part"  # a quality change starts afresh
            total += self._retry(lambda s=stream, p=part: self._fetch(s, p, streams.headers, what), what)
            files.append(part)
        target = self.settings.library_path / season.series_id / episode_filename(season, episode)
        self._mux(files, target, what)
        for part in files:
            part.unlink(missing_ok=True)
        log.info("%s: %s (%s)", what, target.name, streams.quality)
        if self.on_episode is not None:
            with self._lock:  # indexing is one at a time (it holds the index's writer lock)
                self.on_episode(target)
        return total

    def _retry(self, call, what: str):
        """call(), retried with exponential back-off while its error is retryable."""
        attempts = self.settings.bilibili.retries + 1
        for attempt in range(attempts):
            try:
                return call()
            except SourceError as exc:
                if not exc.retryable or attempt == attempts - 1:
                    raise
                delay = min(60.0, 2.0**attempt)
                log.warning("%s; retrying in %.0f s (%d/%d)", exc.message, delay, attempt + 1, attempts - 1)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _fetch(self, stream: MediaStream, part: Path, headers: dict, what: str) -> int:
        """Download one stream into part, resuming what an earlier attempt left; returns its size."""
        last_error = SourceError(f"{what}: the source listed no URL for its {stream.kind} stream", True)
        for url in stream.urls:
            try:
                return self._fetch_url(url, part, headers)
            except SourceError as exc:
                last_error = exc
                if exc.retryable:
                    continue  # try the backup URL next; the caller retries the whole list
                raise SourceError(f"{what}: {exc.message}") from None
        raise SourceError(f"{what}: {last_error.message}", True)

    def _fetch_url(self, url: str, part: Path, headers: dict) -> int:
        have = part.stat().st_size if part.exists() else 0
        request_headers = dict(headers)
        if have:
            request_headers["Range"] = f"bytes={have}-"
        try:
            response = self.http.request("GET", url, headers=request_headers, preload_content=False)
        except urllib3.exceptions.HTTPError as exc:
            raise SourceError(f"network error ({type(exc).__name__})", True) from None
        try:
            if response.status == 416 and have:  # nothing left to fetch: the part is complete already
                return self._check_size(part, _total_from(response.headers, None))
            if response.status not in (200, 206):
                response.drain_conn()
            if response.status in (429, 412, 503) or response.status >= 500:
                raise SourceError(f"HTTP {response.status} from the media server", True)
            if response.status not in (200, 206):
                raise SourceError(f"HTTP {response.status} from the media server")
            if response.status == 200:
                have = 0  # the server ignored the range: start over
            total = _total_from(response.headers, have if response.status == 206 else 0)
            mode = "ab" if response.status == 206 else "wb"
            bar = tqdm(
                total=total,
                initial=have,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                leave=False,
                desc=part.name,
                disable=not self.progress,
            )
            try:
                with open(part, mode) as out:
                    for chunk in response.stream(CHUNK):
                        out.write(chunk)
                        bar.update(len(chunk))
                    out.flush()
                    os.fsync(out.fileno())
            except (urllib3.exceptions.HTTPError, ConnectionError) as exc:
                raise SourceError(f"download interrupted ({type(exc).__name__}); will resume", True) from None
            finally:
                bar.close()
            return self._check_size(part, total)
        finally:
            response.release_conn()

    @staticmethod
    def _check_size(part: Path, total: int | None) -> int:
        size = part.stat().st_size
        if total is not None and size != total:
            raise SourceError(f"got {size} of {total} bytes; will resume", size < total)
        return size

    def _mux(self, files: list[Path], target: Path, what: str) -> None:
        tmp = target.with_name(f".{target.name}.part")
        args = [self.settings.media.ffmpeg, "-v", "error", "-nostdin", "-y"]
        for f in files:
            args += ["-i", str(f)]
        for i in range(len(files)):
            args += ["-map", f"{i}"]
        args += ["-c", "copy", "-movflags", "+faststart", "-f", "mp4", str(tmp)]
        result = subprocess.run(args, capture_output=True, text=True, errors="replace")
        if result.returncode != 0:
            tmp.unlink(missing_ok=True)
            for f in files:  # the downloaded data is unusable: fetch it again next time
                f.unlink(missing_ok=True)
            raise SourceError(f"{what}: ffmpeg could not mux the streams: {result.stderr.strip()[-300:]}")
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(tmp, target)


def _what(season: SeasonInfo, episode: EpisodeInfo) -> str:
    """How messages name an episode."""
    return f"episode {episode.number} of {season.title}"


def _total_from(headers, offset: int | None) -> int | None:
    """The full size of a resource from Content-Range (206) or Content-Length (200)."""
    content_range = headers.get("Content-Range", "")
    if "/" in content_range and content_range.rsplit("/", 1)[1].isdigit():
        return int(content_range.rsplit("/", 1)[1])
    length = headers.get("Content-Length")
    if length and length.isdigit() and offset is not None:
        return int(length) + offset
    return None


def download_queue(
    settings: Settings,
    queue: list | None = None,
    source: Source | None = None,
    progress: bool = True,
    process: bool | None = None,
) -> DownloadReport:
    """Run `download-bilibili`: every season of `queue` (default: bilibili.queue), optionally indexing each episode
    as it lands."""
    from .bilibili import BilibiliSource

    entries = parse_queue(settings.bilibili.queue if queue is None else queue)
    if not entries:
        raise ConfigError('bilibili.queue is empty: add seasons to config.json, e.g. "queue": ["ss12345"]')
    source = source or BilibiliSource(settings.bilibili.sessdata)
    process = settings.bilibili.process_after if process is None else process
    report = DownloadReport()
    index = None

    def index_episode(path: Path) -> None:
        nonlocal index
        from ..index import Index
        from ..ingest.indexer import process_library

        if index is None:
            index = Index(settings)
        report.indexed += process_library(index, progress=False).indexed

    try:
        return Downloader(settings, source, progress, index_episode if process else None).run(entries, report)
    finally:
        if index is not None:
            index.close()
