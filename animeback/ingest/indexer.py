"""`process`: index every new or changed episode of the library, remove vanished ones, resumably.

Write order (so a crash at any point is repaired by the next run, with no duplicate and no orphan):
1. the episode record is written with status "indexing" before any vector;
2. vectors go to Milvus (deterministic ids), then their frame map to LevelDB, batch by batch;
3. Milvus is flushed, the preview moved into place, and only then the record says "indexed".
A record found in "indexing" or "removing" at start has its vectors and frames deleted before anything else.

The frame map in LevelDB is the durable record of what Milvus must hold: search reads everything it needs per hit
from Milvus itself, and every run of `process` checks Milvus against the frame map (`verify`), re-indexing an
episode whose vectors are missing and deleting vectors that belong to no episode.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..errors import LibraryError, MediaError
from ..imaging import halves
from ..index import Index
from ..model.mobilenet import INPUT_SIZE
from ..model.pixels import to_model_input
from ..stores import EpisodeRecord, EpisodeStatus, FrameRow, Hit
from ..stores.catalogue import MAX_SAMPLES, REGION_SHIFT, frame_id, whole_frame_id
from .dedupe import Deduplicator, KeptFrame
from .library import EpisodeFile, anilist_id, content_hash, read_series_metadata, scan_library
from .media import FrameSampler, open_video
from .repeats import find_repeats

log = logging.getLogger(__name__)

PREVIEW_DIR = "previews"
# an episode's preview or moment track, or one being written
PREVIEW_NAME = re.compile(r"[0-9]+(\.moments)?\.mp4(\.part)?")
MAX_RETRY_BACKOFF_S = 86400.0  # a file that keeps failing the same way is still tried once a day
REPEAT_SEARCH_BATCH = 256  # frames searched per Milvus call when looking for repeated sequences
REPEAT_CANDIDATES = 5  # nearest frames per frame: a still shot of the holder stands for several neighbours


@dataclass
class ProcessReport:
    """What one `process` run did."""

    indexed: int = 0
    skipped: int = 0
    failed: int = 0
    removed: int = 0
    repaired: int = 0
    verified_missing: int = 0  # indexed episodes whose vectors Milvus had lost (re-indexed)
    orphans_deleted: int = 0  # episodes' worth of vectors in Milvus with no record (deleted)
    previews_deleted: int = 0  # preview files no record names (left by an interrupted run or a reindex)
    video_seconds: float = 0.0
    frames_sampled: int = 0
    frames_kept: int = 0
    vectors_written: int = 0
    waiting: int = 0  # new or changed files left for a later run: not yet complete (`watch`)
    wall_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def changed_anything(self) -> bool:
        return bool(self.indexed or self.failed or self.removed or self.repaired or self.verified_missing)

    def summary(self) -> str:
        return (
            f"indexed {self.indexed} episode(s) ({self.video_seconds / 60:.1f} min of video), "
            f"skipped {self.skipped} unchanged, removed {self.removed}, failed {self.failed}; "
            f"frames sampled {self.frames_sampled}, kept {self.frames_kept}, vectors written "
            f"{self.vectors_written}; wall time {self.wall_seconds:.1f} s"
            + (
                f"; re-indexed {self.verified_missing} episode(s) whose vectors Milvus had lost"
                if self.verified_missing
                else ""
            )
            + (f"; deleted the vectors of {self.orphans_deleted} unknown episode(s)" if self.orphans_deleted else "")
            + (f"; waiting for {self.waiting} file(s) still being written" if self.waiting else "")
        )


def _remove_episode(index: Index, record: EpisodeRecord) -> list[EpisodeRecord]:
    """Delete an episode's vectors, frames, repeats, preview and record; first, every episode that points to
    frames it holds (a repeated opening stored here), which the same run then indexes again. Returns those."""
    linked = []
    # Episodes point only to episodes indexed before them, so this recursion ends.
    for linker_id in sorted({r.episode for r in index.catalogue.repeats_held_by(record.id)}):
        linker = index.catalogue.get_episode(linker_id)
        if linker is not None:
            log.info(
                "removing %s too, to index it again: its repeated frames are stored in %s",
                linker.relpath,
                record.relpath,
            )
            linked += [linker, *_remove_episode(index, linker)]
    record.status = EpisodeStatus.REMOVING
    index.catalogue.put_episode(record)
    index.vectors.delete_episode(record.id)
    index.vectors.flush()
    for name in (record.preview, record.moments):
        if name:
            index.settings.preview_path(name).unlink(missing_ok=True)
    index.catalogue.delete_episode(record.id)
    return linked


def repair(index: Index) -> int:
    """Undo episodes left half-written or half-removed by an interrupted run; returns how many."""
    count = 0
    for record in list(index.catalogue.episodes()):
        if record.status in (EpisodeStatus.INDEXING, EpisodeStatus.REMOVING):
            log.info("repairing %s (interrupted while %s)", record.relpath, record.status)
            _remove_episode(index, record)
            count += 1
        elif record.status == EpisodeStatus.FAILED and record.frames_kept:
            _remove_episode(index, record)
    return count


def _check_removals(
    library: Path,
    files: list[EpisodeFile],
    records: dict[str, EpisodeRecord],
    gone: list[EpisodeRecord],
    max_share: float,
    allow_empty: bool,
    allow_removal: bool,
) -> None:
    """Refuse a run that would empty the index because the library folder is missing, empty or half there."""
    if allow_empty:
        return
    if not library.is_dir():
        raise LibraryError(
            f"the library folder {library} does not exist (not mounted? a typo in library_dir?); "
            f"nothing was changed. `process --allow-empty` indexes an empty library"
        )
    indexed = sum(1 for r in records.values() if r.status == EpisodeStatus.INDEXED)
    if not files and indexed:
        raise LibraryError(
            f"the library folder {library} holds no episodes, but {indexed} are indexed; nothing was "
            f"removed. `process --allow-empty` removes them all"
        )
    if allow_removal or not indexed:
        return
    leaving = sum(1 for r in gone if r.status == EpisodeStatus.INDEXED)
    if leaving > max_share * indexed:
        raise LibraryError(
            f"{leaving} of the {indexed} indexed episodes are gone from {library}; removing more "
            f"than {max_share:.0%} at once (process.max_removal_share) needs `process "
            f"--allow-removal`; nothing was removed"
        )


def _delete_stray_previews(index: Index, kept: Iterable[EpisodeRecord]) -> int:
    """Delete preview files that none of the kept records names: `.part` files of interrupted runs, previews of
    removed episodes (the writer lock is held, so no other run is writing one now)."""
    folder = index.settings.media_path
    if not folder.is_dir():
        return 0
    named = {name for r in kept for name in (r.preview, r.moments) if name}
    deleted = 0
    for path in folder.iterdir():
        # only files of our naming: media_dir may be a shared folder that holds other things too
        ours = PREVIEW_NAME.fullmatch(path.name) is not None
        if ours and f"{PREVIEW_DIR}/{path.name}" not in named and path.is_file():
            path.unlink(missing_ok=True)
            deleted += 1
    if deleted:
        log.info("deleted %d preview file(s) that no episode uses", deleted)
    return deleted


def verify(index: Index) -> tuple[int, int]:
    """Check Milvus against the frame map: an indexed episode whose vectors are not all there is removed (so this
    run indexes it again), and vectors of episodes with no record are deleted. Returns (re-indexed, orphans)."""
    # Once `repair` has run, only indexed episodes have frames. One count in each store is the common case (1.3 s
    # for 3.5M frames in LevelDB); episode by episode only when they differ.
    if index.vectors.count() == index.catalogue.count_frames():
        return 0, 0
    missing = 0
    for record in [r for r in index.catalogue.episodes() if r.status == EpisodeStatus.INDEXED]:
        held, mapped = index.vectors.count(record.id), index.catalogue.count_frames(record.id)
        if held != mapped:
            log.warning("%s: Milvus holds %d of its %d vectors; indexing it again", record.relpath, held, mapped)
            _remove_episode(index, record)
            missing += 1
    known = {r.id for r in index.catalogue.episodes()}
    orphans = sorted(index.vectors.episode_ids() - known)
    for episode in orphans:
        log.warning("deleting the vectors of episode id %d, which no record names", episode)
        index.vectors.delete_episode(episode)
    if orphans:
        index.vectors.flush()
    return missing, len(orphans)


class EpisodeIndexer:
    """Runs one episode through media -> dedupe -> features -> stores."""

    def __init__(self, index: Index, progress: bool = True):
        self.index, self.progress = index, progress
        self.settings = index.settings

    def _write(self, record: EpisodeRecord, kept: list[KeptFrame]) -> list[FrameRow]:
        """Embed and store kept frames (with features.half_frames, their halves too); returns the rows written."""
        views = [(k, 0, to_model_input(k.pixels)) for k in kept]
        if self.settings.features.half_frames:
            # A half is stretched to the CNN's square input as a screenshot of that half would be; frames are
            # sampled at twice the CNN's size for this, so that a half keeps the detail such a screenshot has.
            views += [
                (k, region, to_model_input(half)) for k in kept for region, half in enumerate(halves(k.pixels), 1)
            ]
        vectors = self.index.embedder.embed(np.stack([pixels for _, _, pixels in views]))
        rows = [
            FrameRow(frame_id(record.id, k.index, region), record.id, record.series_id, k.time, k.start, k.end, v)
            for (k, region, _), v in zip(views, vectors)
        ]
        self.index.vectors.insert(rows)
        self.index.catalogue.put_frames([(r.id, r.episode, r.time, r.start, r.end) for r in rows])
        return rows

    def _store_repeats_once(self, record: EpisodeRecord, whole: list[FrameRow]) -> int:
        """Find the episode's sequences that another episode of the series holds (an opening, an ending, a recap),
        record them and delete their frames here; returns how many vectors were deleted."""
        if not self.settings.repeats.enabled or not whole:
            return 0
        per_frame = self.index.configured_parameters().vectors_per_frame  # the entries each frame was written with
        hits: list[list[Hit]] = []
        for i in range(0, len(whole), REPEAT_SEARCH_BATCH):
            batch = whole[i : i + REPEAT_SEARCH_BATCH]
            found = self.index.vectors.search(
                np.stack([r.vector for r in batch]),
                REPEAT_CANDIDATES * per_frame,
                series=[record.series_id],
                exclude_episode=record.id,
                regions=False,
            )
            hits += [[h for h in frame_hits if h.id == whole_frame_id(h.id)] for frame_hits in found]
        holders = {h.episode for frame_hits in hits for h in frame_hits}
        records = {e: self.index.catalogue.get_episode(e) for e in holders}
        durations = {e: r.duration for e, r in records.items() if r is not None and r.status == EpisodeStatus.INDEXED}
        hits = [[h for h in frame_hits if h.episode in durations] for frame_hits in hits]
        found_repeats = find_repeats(record.id, record.duration, whole, hits, durations, self.settings.repeats)
        if not found_repeats.repeats:
            return 0
        for repeat in found_repeats.repeats:
            holder = records[repeat.holder]
            log.info(
                "%s: %s %.1f-%.1f s is stored once, in %s",
                record.relpath,
                repeat.kind,
                repeat.start,
                repeat.end,
                holder.relpath if holder else repeat.holder,
            )
        ids = [fid | (region << REGION_SHIFT) for fid in found_repeats.frame_ids for region in range(per_frame)]
        self.index.catalogue.put_repeats(found_repeats.repeats)
        self.index.vectors.delete_ids(ids)
        self.index.catalogue.delete_frame_ids(ids)
        self.index.vectors.flush()
        return len(ids)

    def run(self, file: EpisodeFile, digest: str) -> EpisodeRecord:
        """Index one episode file (raises MediaError when it cannot be read); returns its indexed record."""
        s = self.settings
        catalogue = self.index.catalogue
        video = open_video(file.path, s.media)
        info, crop = video.info, video.crop
        if info.duration * s.media.sample_fps >= MAX_SAMPLES:
            raise MediaError(
                f"{file.path}: too long to index ({info.duration:.0f} s at media.sample_fps "
                f"{s.media.sample_fps:g} is more than {MAX_SAMPLES} samples)"
            )
        record = _new_record(
            self.index,
            file,
            EpisodeStatus.INDEXING,
            size=file.size,
            mtime_ns=file.mtime_ns,
            content_hash=digest,
            duration=info.duration,
            fps=info.fps,
            width=info.width,
            height=info.height,
            crop=crop.as_list() if crop else None,
            model=self.index.model_name,
            sample_fps=s.media.sample_fps,
        )
        catalogue.put_episode(record)
        preview_rel = f"{PREVIEW_DIR}/{record.id}.mp4" if s.media.preview else None
        moments_rel = f"{PREVIEW_DIR}/{record.id}.moments.mp4"
        # Written as .part files, moved into place once the episode's vectors are stored.
        written_files = {rel: s.preview_path(f"{rel}.part") for rel in (preview_rel, moments_rel) if rel}
        s.media_path.mkdir(parents=True, exist_ok=True)
        size = 2 * INPUT_SIZE if s.features.half_frames else INPUT_SIZE
        sampler = FrameSampler.from_settings(
            s.media, video, written_files.get(preview_rel or ""), size, moments=written_files[moments_rel]
        )
        dedupe = Deduplicator.from_settings(s.dedupe)
        batch: list[KeptFrame] = []
        written = 0
        whole: list[FrameRow] = []  # whole-frame rows, kept to look for repeated sequences once all are stored

        def write(kept: list[KeptFrame]) -> int:
            rows = self._write(record, kept)
            if s.repeats.enabled:
                whole.extend(row for row in rows if row.id == whole_frame_id(row.id))
            return len(rows)

        bar = tqdm(
            total=info.duration,
            unit="s",
            desc=file.relpath[-40:],
            disable=not self.progress,
            leave=False,
            bar_format="{desc} {bar} {n:.0f}/{total:.0f} s [{elapsed}<{remaining}] {postfix}",
        )
        try:
            for kept in dedupe.filter(sampler, info.duration):
                batch.append(kept)
                bar.update(max(0.0, min(kept.end, info.duration) - bar.n))
                if len(batch) >= s.features.batch_size:
                    written += write(batch)
                    batch = []
                    bar.set_postfix_str(f"kept {dedupe.kept}/{dedupe.sampled}")
            if batch:
                written += write(batch)
            self.index.vectors.flush()
            stored_elsewhere = self._store_repeats_once(record, whole)
            for rel, part in written_files.items():
                os.replace(part, s.preview_path(rel))
        except BaseException:
            for part in written_files.values():
                part.unlink(missing_ok=True)
            raise
        finally:
            bar.close()
        record.status, record.preview, record.moments = EpisodeStatus.INDEXED, preview_rel, moments_rel
        record.frames_sampled, record.frames_kept = dedupe.sampled, dedupe.kept
        record.vectors = written - stored_elsewhere
        record.vectors_elsewhere = stored_elsewhere
        record.indexed_at = time.time()
        catalogue.put_episode(record)
        self.index.record_parameters()
        return record


def _new_record(index: Index, file: EpisodeFile, status: EpisodeStatus, **fields: Any) -> EpisodeRecord:
    """A record of a library file under a fresh episode id (ids are never reused)."""
    return EpisodeRecord(
        id=index.catalogue.new_episode_id(),
        series_id=file.series_id,
        relpath=file.relpath,
        status=status,
        episode=file.episode,
        **fields,
    )


def _record_failure(index: Index, file: EpisodeFile, digest: str, error: str, environmental: bool) -> None:
    """Keep a "failed" record (no vectors) so `status` can show the current cause, and say when to try again: a
    cause outside the file (environmental) on the next run; a file that fails the same way again after a back-off
    that doubles each time (process.retry_failed_after_s, at most a day); a changed file at once."""
    catalogue = index.catalogue
    matching = [
        r
        for r in catalogue.episodes()
        if r.relpath == file.relpath and r.status in (EpisodeStatus.INDEXING, EpisodeStatus.FAILED)
    ]
    for other in matching:  # the attempt that just failed may have written some vectors
        index.vectors.delete_episode(other.id)
        catalogue.delete_frames(other.id)
        catalogue.delete_repeats(other.id)
    record = next((r for r in matching if r.status == EpisodeStatus.FAILED), matching[0] if matching else None)
    for other in matching:
        if other is not record:
            catalogue.delete_episode(other.id)
    if record is not None:
        same = record.error == error and record.content_hash == digest
        attempts = int(record.extra.get("attempts", 1)) + 1 if same else 1
    else:
        record = _new_record(index, file, EpisodeStatus.FAILED)
        attempts = 1
    record.status, record.error, record.frames_kept, record.vectors = EpisodeStatus.FAILED, error, 0, 0
    record.size, record.mtime_ns, record.content_hash = file.size, file.mtime_ns, digest
    record.extra = {**record.extra, "attempts": attempts, "failed_at": time.time(), "environmental": environmental}
    catalogue.put_episode(record)


def retry_due(record: EpisodeRecord, first_backoff_s: float, now: float | None = None) -> bool:
    """Whether a failed, unchanged file is to be tried again: always when the cause lay outside it, else once its
    back-off has passed (first_backoff_s, doubling with each failure of the same kind, at most a day)."""
    if record.extra.get("environmental", False):
        return True
    attempts = int(record.extra.get("attempts", 1))
    backoff = min(first_backoff_s * 2 ** (attempts - 1), MAX_RETRY_BACKOFF_S)
    return (time.time() if now is None else now) >= float(record.extra.get("failed_at", 0.0)) + backoff


def process_library(
    index: Index,
    reindex: bool = False,
    progress: bool = True,
    allow_empty: bool = False,
    allow_removal: bool = False,
    ready: Callable[[EpisodeFile], bool] | None = None,
) -> ProcessReport:
    """Bring the index in line with the library folder; see the module docstring for the guarantees.

    A missing or empty library folder removes nothing unless `allow_empty`; nor does one that lacks more than
    process.max_removal_share of the indexed episodes, unless `allow_removal` (an unmounted disk, a typo).
    With `ready`, a new or changed file it refuses (one still being written) is left for a later run."""
    with index.writing():
        return _process_library(index, reindex, progress, allow_empty, allow_removal, ready)


def _process_library(
    index: Index,
    reindex: bool,
    progress: bool,
    allow_empty: bool,
    allow_removal: bool,
    ready: Callable[[EpisodeFile], bool] | None,
) -> ProcessReport:
    started = time.monotonic()
    settings = index.settings
    report = ProcessReport()
    scan = scan_library(settings.library_path)
    files = scan.files
    on_disk = {f.relpath: f for f in files}
    records = {r.relpath: r for r in index.catalogue.episodes()}
    # Checked before anything changes: a library that is not there must not empty the index.
    _check_removals(
        settings.library_path,
        files,
        records,
        [r for p, r in records.items() if p not in on_disk],
        settings.process.max_removal_share,
        allow_empty,
        allow_removal,
    )
    if reindex:
        log.info("re-indexing everything with %s", index.model_name)
        index.reset()
    index.check_model()
    report.repaired = repair(index)
    report.verified_missing, report.orphans_deleted = verify(index)
    records = {r.relpath: r for r in index.catalogue.episodes()}  # what repair and verify left
    for problem in scan.skipped:
        log.error("%s", problem)
        report.failed += 1
        report.errors.append(problem)
    for record in [r for p, r in records.items() if p not in on_disk]:
        if record.relpath not in records:
            continue  # removed already, as an episode linked to one removed before
        log.info("removing %s (file is gone)", record.relpath)
        for linked in _remove_episode(index, record):
            records.pop(linked.relpath, None)  # indexed again below, as a new file (when it is still there)
            report.removed += linked.relpath not in on_disk
        records.pop(record.relpath)
        report.removed += 1
    # the records left once the gone ones are removed: no second read of the catalogue
    report.previews_deleted = _delete_stray_previews(index, [r for p, r in records.items() if p in on_disk])
    for series_id in sorted({f.series_id for f in files}):
        metadata = read_series_metadata(settings.library_path / series_id)
        if metadata != (index.catalogue.get_series(series_id) or {}):
            index.catalogue.put_series(series_id, metadata)
        index.catalogue.assign_series_number(series_id, anilist_id(series_id, metadata))
    worker = EpisodeIndexer(index, progress)
    todo = [f for f in files if not _unchanged(records.get(f.relpath), f, settings.process.retry_failed_after_s)]
    report.skipped = len(files) - len(todo)
    if ready is not None:
        waiting = {f.relpath for f in todo if not ready(f)}
        report.waiting = len(waiting)
        todo = [f for f in todo if f.relpath not in waiting]
    try:
        _index_files(index, worker, todo, records, on_disk, report)
    finally:
        index.refresh_stats()
    report.wall_seconds = time.monotonic() - started
    return report


def _index_files(
    index: Index,
    worker: EpisodeIndexer,
    todo: list[EpisodeFile],
    records: dict[str, EpisodeRecord],
    on_disk: dict[str, EpisodeFile],
    report: ProcessReport,
) -> None:
    """Index the files of `todo` in turn; an episode removed with one that changed joins it, to be indexed again."""
    planned = {f.relpath for f in todo}
    # The whole run's bar, over the files' bytes (their durations are known only once each is opened): its ETA
    # assumes the rest index at the rate of those done so far.
    run_bar = tqdm(
        total=sum(f.size for f in todo),
        disable=not worker.progress or len(todo) < 2,
        bar_format="{desc} {bar} {percentage:3.0f}% [{elapsed}<{remaining} for the run]",
        desc=f"episodes 0/{len(todo)}",
    )
    with run_bar:
        for position, file in enumerate(todo, 1):
            try:
                previous = records.get(file.relpath)
                try:
                    digest = content_hash(file.path)
                except OSError as exc:
                    _fail(
                        index, report, file, "", f"{file.path}: cannot read ({exc.strerror or exc})", environmental=True
                    )
                    continue
                if previous and previous.status == EpisodeStatus.INDEXED and previous.content_hash == digest:
                    previous.size, previous.mtime_ns = file.size, file.mtime_ns  # touched, not changed
                    index.catalogue.put_episode(previous)
                    report.skipped += 1
                    continue
                if previous and previous.status == EpisodeStatus.INDEXED:
                    log.info("re-indexing %s (content changed)", file.relpath)
                    for linked in _remove_episode(index, previous):
                        records.pop(linked.relpath, None)
                        if linked.relpath in on_disk and all(f.relpath != linked.relpath for f in todo[position:]):
                            todo.append(on_disk[linked.relpath])  # this loop reaches it: indexed again in this run
                            report.skipped -= linked.relpath not in planned  # counted as unchanged before
                            planned.add(linked.relpath)
                log.info("[%d/%d] indexing %s", position, len(todo), file.relpath)
                try:
                    record = worker.run(file, digest)
                except MediaError as exc:
                    _fail(index, report, file, digest, exc.message, exc.environmental)
                    continue
                if previous and previous.status == EpisodeStatus.FAILED:
                    index.catalogue.delete_episode(previous.id)  # its cause is history now: `status` no longer lists it
                report.indexed += 1
                report.video_seconds += record.duration
                report.frames_sampled += record.frames_sampled
                report.frames_kept += record.frames_kept
                report.vectors_written += record.vectors
            finally:
                run_bar.total = sum(f.size for f in todo)  # an episode linked to a changed one may have joined
                run_bar.set_description_str(f"episodes {position}/{len(todo)}", refresh=False)
                run_bar.update(file.size)


def _unchanged(record: EpisodeRecord | None, file: EpisodeFile, first_backoff_s: float) -> bool:
    """Whether a file needs no work this run: indexed and untouched, or failed and not yet due for a retry."""
    if record is None or record.size != file.size or record.mtime_ns != file.mtime_ns:
        return False
    if record.status == EpisodeStatus.FAILED:
        return not retry_due(record, first_backoff_s)
    return record.status == EpisodeStatus.INDEXED


def _fail(
    index: Index, report: ProcessReport, file: EpisodeFile, digest: str, message: str, environmental: bool = False
) -> None:
    log.error("%s", message)  # said once, as it happens; the CLI's summary counts it
    _record_failure(index, file, digest, message, environmental)
    report.failed += 1
    report.errors.append(message)
