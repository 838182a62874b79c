"""End to end on real ffmpeg, Milvus Lite, LevelDB and Keras: index synthetic episodes, find their frames."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from animeback.config import updated
from animeback.index import Index
from animeback.ingest.indexer import process_library
from animeback.query.search import Searcher
from animeback.sources.synthetic import episode_scenes, grab_frame, make_episode
from animeback.stores import EpisodeStatus, FrameRow
from animeback.stores.catalogue import frame_id
from animeback.web.responses import trace_moe_result
from tests.conftest import LIBRARY, make_settings


def _query_times(seed: int, duration: float) -> list[float]:
    """One moment inside every scene of an episode, away from its cuts, plus one in the static stretch."""
    times = []
    for _kind, start, end in episode_scenes(seed, duration):
        times.append(round(start + (end - start) * 0.6, 2))
    return times


def _consistent(index: Index) -> None:
    """Milvus rows, LevelDB frame map and episode records agree, with no orphan."""
    records = [r for r in index.catalogue.episodes()]
    indexed = {r.id for r in records if r.status == "indexed"}
    assert all(r.status in ("indexed", "failed") for r in records)
    assert index.vectors.count() == index.catalogue.count_frames() == sum(r.vectors for r in records)
    assert index.vectors.episode_ids() <= indexed
    for r in records:
        # frames stored once in another episode (a file that repeats another one) are not stored again
        assert index.vectors.count(r.id) == index.catalogue.count_frames(r.id) == r.frames_kept - r.vectors_elsewhere


def test_process_indexes_every_episode(indexed):
    index, report = indexed
    assert report.indexed == len(LIBRARY) and report.failed == 0
    assert report.frames_kept < report.frames_sampled  # the static stretch was deduplicated
    assert report.vectors_written == index.vectors.count() > 0
    _consistent(index)
    stats = index.catalogue.get_meta("stats")
    assert stats["vectors"] == report.vectors_written and stats["aspects"] == [round(320 / 180, 3)]
    episodes = {r.relpath: r for r in index.catalogue.episodes()}
    assert episodes["101/[Sub] Show One - 02 [1080p].mkv"].episode == 2
    assert episodes["Other Show/Other Show EP03.webm"].episode == 3
    for record in episodes.values():
        preview = index.settings.data_path / record.preview
        assert preview.stat().st_size > 1000
    assert index.catalogue.get_series("101")["title"] == "Show One"


@pytest.mark.parametrize("series,name,seed,duration", LIBRARY)
def test_frames_are_found_at_the_right_moment(indexed, library_template, tmp_path, series, name, seed, duration):
    index, _ = indexed
    searcher = Searcher(index)
    video = library_template / series / name
    for at in _query_times(seed, duration):
        shot = grab_frame(video, at, tmp_path / f"shot_{at}.jpg")
        outcome = searcher.search_bytes(shot.read_bytes())
        best = outcome.matches[0]
        assert best.filename == name, (at, outcome.matches[:3])
        assert best.series_id == series
        assert abs(best.at - at) <= 1.0 or best.start - 0.1 <= at <= best.end + 0.1, (at, best)
        assert best.similarity > 0.5


def test_letterboxed_query_finds_the_frame(indexed, library_template, tmp_path):
    index, _ = indexed
    series, name, seed, duration = LIBRARY[0]
    at = _query_times(seed, duration)[1]
    shot = grab_frame(
        library_template / series / name, at, tmp_path / "boxed.png", vf="scale=320:180,pad=320:240:0:30:black"
    )
    outcome = Searcher(index).search_bytes(shot.read_bytes(), cut_borders=True)
    assert outcome.box is not None and outcome.box.h in range(178, 183)
    assert outcome.matches[0].filename == name
    assert abs(outcome.matches[0].at - at) <= 1.0


def test_series_filter_and_result_shape(indexed, library_template, tmp_path):
    index, _ = indexed
    series, name, _seed, _duration = LIBRARY[2]
    shot = grab_frame(library_template / series / name, 3.0, tmp_path / "q.png")
    searcher = Searcher(index)
    outcome = searcher.search_bytes(shot.read_bytes(), series=searcher.series_folders("101"))
    assert outcome.matches and all(m.series_id == "101" for m in outcome.matches)
    result = trace_moe_result(searcher.search_bytes(shot.read_bytes()).matches[0])
    assert set(result) == {
        "anilist",
        "series",
        "filename",
        "episode",
        "episode_start",
        "episode_end",
        "duration",
        "from",
        "at",
        "to",
        "similarity",
        "video",
        "image",
        "segment",
        "occurrences",
    }
    assert result["segment"] is None and result["occurrences"] == []  # no sequence repeats in this library
    # a folder that is not a number gets a stable integer id of the catalogue's, above every AniList id
    other = index.catalogue.series_number("Other Show")
    assert isinstance(other, int) and 1_000_000_000 <= other < 2**31
    assert result["anilist"] == other and result["series"] == "Other Show" and result["episode"] == 3
    assert result["from"] <= result["at"] <= result["to"]
    assert searcher.series_folders(str(other)) == ["Other Show"] and searcher.series_folders("Other Show") == [
        "Other Show"
    ]


@pytest.mark.slow
def test_rerun_skips_changed_reindexes_and_deleted_removed(library, tmp_path, embedder, milvus_sections):
    settings = make_settings(tmp_path, library, **milvus_sections)
    with Index(settings, embedder) as index:
        first = process_library(index, progress=False)
        assert first.indexed == 3
        before = {r.relpath: r.id for r in index.catalogue.episodes()}
        again = process_library(index, progress=False)
        assert (again.indexed, again.skipped, again.removed) == (0, 3, 0)
        assert {r.relpath: r.id for r in index.catalogue.episodes()} == before

        touched = library / LIBRARY[0][0] / LIBRARY[0][1]
        os.utime(touched, (1, 1))  # same content, new mtime: recognised by content, not re-indexed
        changed = library / LIBRARY[1][0] / LIBRARY[1][1]
        make_episode(changed, seed=77, duration=12.0)
        (library / LIBRARY[2][0] / LIBRARY[2][1]).unlink()
        third = process_library(index, progress=False)
        assert (third.indexed, third.skipped, third.removed) == (1, 1, 1)
        after = {r.relpath: r for r in index.catalogue.episodes()}
        assert set(after) == {LIBRARY[0][0] + "/" + LIBRARY[0][1], LIBRARY[1][0] + "/" + LIBRARY[1][1]}
        assert after[LIBRARY[0][0] + "/" + LIBRARY[0][1]].id == before[LIBRARY[0][0] + "/" + LIBRARY[0][1]]
        assert after[LIBRARY[1][0] + "/" + LIBRARY[1][1]].duration == pytest.approx(12.0, abs=0.1)
        _consistent(index)
        # the removed and the re-indexed episode's old preview and moment track are gone with their records
        named = {Path(name).name for r in after.values() for name in (r.preview, r.moments) if name}
        assert {p.name for p in settings.media_path.iterdir()} == named and len(named) == 4
        shot = grab_frame(changed, 5.0, tmp_path / "changed.png")
        best = Searcher(index).search_bytes(shot.read_bytes()).matches[0]
        assert best.filename == LIBRARY[1][1] and abs(best.at - 5.0) <= 1.0


@pytest.mark.slow
def test_bad_episodes_fail_alone_and_leave_the_index_consistent(library, tmp_path, embedder, milvus_sections):
    series = library / "101"
    (series / "notes 04.mp4").write_text("this is not a video")
    (series / "empty 05.mp4").write_bytes(b"")
    good = (series / LIBRARY[0][1]).read_bytes()
    (series / "truncated 06.mkv").write_bytes(good[: len(good) // 3])
    shutil.copy(series / LIBRARY[0][1], series / "copy 07.avi")  # an mp4 with another extension still indexes
    settings = make_settings(tmp_path, library, **milvus_sections)
    with Index(settings, embedder) as index:
        report = process_library(index, progress=False)
        assert report.indexed == 4 and report.failed == 3
        messages = "\n".join(report.errors)
        assert "notes 04.mp4: not a readable video" in messages
        assert "empty 05.mp4: the file is empty (0 bytes)" in messages
        assert "truncated 06.mkv" in messages
        failed = {r.relpath for r in index.catalogue.episodes() if r.status == "failed"}
        assert failed == {"101/notes 04.mp4", "101/empty 05.mp4", "101/truncated 06.mkv"}
        _consistent(index)
        rerun = process_library(index, progress=False)
        assert rerun.failed == 0 and rerun.indexed == 0  # unchanged bad files are not retried every run


@pytest.mark.slow
def test_a_video_with_more_samples_than_frame_ids_hold_fails_with_a_clear_message(tmp_path, embedder):
    import subprocess

    library = tmp_path / "library"
    (library / "101").mkdir(parents=True)
    # Five hours at one picture per 10 s: 540,000 samples at 30 fps, more than an episode's 2^19 frame ids.
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "color=c=blue:s=32x32:r=0.1",
            "-t",
            "18000",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            str(library / "101" / "marathon 01.mp4"),
        ],
        check=True,
    )
    with Index(make_settings(tmp_path, library, media={"sample_fps": 30.0}), embedder) as index:
        report = process_library(index, progress=False)
        assert (report.indexed, report.failed) == (0, 1)
        assert (
            "marathon 01.mp4: too long to index (18000 s at media.sample_fps 30 is more than 524288 samples)"
            in "\n".join(report.errors)
        )
        _consistent(index)


@pytest.mark.slow
def test_process_repairs_milvus_from_the_frame_map(library, tmp_path, embedder):
    settings = make_settings(tmp_path, library)
    with Index(settings, embedder) as index:
        process_library(index, progress=False)
        damaged = next(r for r in index.catalogue.episodes() if r.relpath == f"{LIBRARY[0][0]}/{LIBRARY[0][1]}")
        # Behind the index's back: Milvus loses part of an episode (a restored backup, a lost segment) and holds
        # vectors of an episode no record names (a foreign or stale writer).
        ids = index.catalogue.frame_ids(damaged.id)
        assert len(ids) == damaged.vectors > 4
        index.vectors.client.delete(index.vectors.collection, ids=ids[: len(ids) // 2])
        stray = embedder.embed(np.full((1, 224, 224, 3), 90, np.uint8))[0]
        index.vectors.insert([FrameRow(frame_id(9999, 0), 9999, "999", 0.0, 0.0, 1.0, stray)])
        index.vectors.flush()
        report = process_library(index, progress=False)
        assert (report.verified_missing, report.orphans_deleted, report.indexed) == (1, 1, 1)
        _consistent(index)
        repaired = next(r for r in index.catalogue.episodes() if r.relpath == damaged.relpath)
        assert repaired.id != damaged.id and repaired.status == EpisodeStatus.INDEXED
        shot = grab_frame(library / LIBRARY[0][0] / LIBRARY[0][1], 4.4, tmp_path / "q.png")
        best = Searcher(index).search_bytes(shot.read_bytes()).matches[0]
        assert best.episode_id == repaired.id and abs(best.at - 4.4) <= 1.0
        quiet = process_library(index, progress=False)  # in agreement again: nothing to repair
        assert (quiet.verified_missing, quiet.orphans_deleted, quiet.indexed) == (0, 0, 0)


def test_search_uses_the_sampling_rate_the_index_was_built_with(indexed, library_template, tmp_path):
    index, _ = indexed
    assert {r.sample_fps for r in index.catalogue.episodes()} == {index.settings.media.sample_fps}
    series, name, seed, duration = LIBRARY[0]
    at = _query_times(seed, duration)[1]
    shot = grab_frame(library_template / series / name, at, tmp_path / "q.jpg").read_bytes()
    built_with = Searcher(index).search_bytes(shot).matches[0]
    # The configuration now says another rate; the episodes were sampled at the old one, and from..to says so.
    other = Index(updated(index.settings, media={"sample_fps": 1.0}), index.embedder)
    try:
        later = Searcher(other).search_bytes(shot).matches[0]
    finally:
        other.close()
    assert (later.start, later.at, later.end) == (built_with.start, built_with.at, built_with.end)
    assert built_with.start > 0 and built_with.end < duration  # not clipped: the margin shows in both bounds
