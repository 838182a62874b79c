"""Nothing is lost by accident: a missing or half-mounted library removes nothing, odd entries and names are
reported or indexed alone, failures are tried again once their cause is fixed, stray previews are cleaned up,
and the preview key is never read half-written."""

from __future__ import annotations

import multiprocessing
import os
import shutil
from pathlib import Path

import pytest

from animeback.errors import LibraryError
from animeback.index import Index
from animeback.ingest.indexer import PREVIEW_DIR, process_library
from animeback.keys import read_or_create_key
from animeback.query.search import Searcher
from animeback.sources.synthetic import grab_frame
from animeback.stores import EpisodeStatus
from tests.conftest import LIBRARY, make_settings
from tests.test_cli import run_cli


def _indexed_count(index: Index) -> int:
    return sum(1 for r in index.catalogue.episodes() if r.status == EpisodeStatus.INDEXED)


@pytest.mark.slow  # indexes the library
def test_a_missing_or_empty_library_folder_removes_nothing(library, tmp_path, embedder):
    with Index(make_settings(tmp_path, library), embedder) as index:
        process_library(index, progress=False)
    vectors = None
    for missing in (tmp_path / "unmounted", tmp_path / "empty"):
        if missing.name == "empty":
            missing.mkdir()
        with Index(make_settings(tmp_path, missing), embedder) as index:
            vectors = vectors or index.vectors.count()
            with pytest.raises(LibraryError, match="nothing was") as err:
                process_library(index, progress=False)
            assert str(missing) in err.value.message and "--allow-empty" in err.value.message
            assert _indexed_count(index) == len(LIBRARY) and index.vectors.count() == vectors
    with Index(make_settings(tmp_path, tmp_path / "empty"), embedder) as index:
        report = process_library(index, progress=False, allow_empty=True)  # the operator said so
        assert report.removed == len(LIBRARY) and index.vectors.count() == 0


@pytest.mark.slow  # indexes the library
def test_removing_most_of_the_index_at_once_needs_allow_removal(library, tmp_path, embedder):
    settings = make_settings(tmp_path, library)
    with Index(settings, embedder) as index:
        process_library(index, progress=False)
        for series, name, _, _ in LIBRARY[:2]:  # 2 of 3 episodes vanish: more than process.max_removal_share
            (library / series / name).unlink()
        with pytest.raises(LibraryError, match=r"2 of the 3 indexed episodes are gone.*--allow-removal"):
            process_library(index, progress=False)
        assert _indexed_count(index) == 3
        assert process_library(index, progress=False, allow_removal=True).removed == 2
        assert _indexed_count(index) == 1


@pytest.mark.slow  # indexes the library
def test_odd_entries_are_reported_once_and_a_name_that_is_not_utf8_is_indexed_losslessly(
    library, tmp_path, embedder, milvus_sections
):
    series = library / "101"
    (series / "folder 09.mp4").mkdir()
    (series / "gone 10.mp4").symlink_to(tmp_path / "nowhere.mp4")
    (series / "loop 11.mp4").symlink_to(series / "loop 11.mp4")
    odd_name = os.fsdecode(b"caf\xe9 episode 12.mp4")  # Latin-1 on disk: not UTF-8
    shutil.copy(series / LIBRARY[0][1], series / odd_name)
    odd_folder = library / os.fsdecode(b"s\xe9rie")
    odd_folder.mkdir()
    shutil.copy(series / LIBRARY[0][1], odd_folder / "ep 01.mp4")
    with Index(make_settings(tmp_path, library, **milvus_sections), embedder) as index:
        report = process_library(index, progress=False)
        assert (report.indexed, report.failed) == (len(LIBRARY) + 1, 4)
        messages = "\n".join(report.errors)
        for what in (
            "folder 09.mp4: a folder, not a video file",
            "gone 10.mp4: a symbolic link to nothing",
            "loop 11.mp4: a symbolic link loop",
            "the folder name is not valid UTF-8",
        ):
            assert messages.count(what) == 1, what
        record = next(r for r in index.catalogue.episodes() if r.relpath == f"101/{odd_name}")
        assert record.status == EpisodeStatus.INDEXED and record.filename == "caf\ufffd episode 12.mp4"
        shot = grab_frame(series / odd_name, 4.4, tmp_path / "q.png")
        matches = Searcher(index).search_bytes(shot.read_bytes()).matches
        # the same video: stored once, answered with the first episode and the copy as an occurrence
        shown = {matches[0].filename} | {o.filename for o in matches[0].occurrences}
        assert shown == {"caf\ufffd episode 12.mp4", LIBRARY[0][1]} and matches[0].segment == "repeat"
        again = process_library(index, progress=False)  # the name came back from the catalogue exactly
        assert again.indexed == 0 and again.skipped == len(LIBRARY) + 1


@pytest.mark.slow  # indexes the library
def test_failures_are_tried_again_once_their_cause_is_fixed(library, tmp_path, embedder):
    broken = make_settings(tmp_path, library, media={"ffprobe": str(tmp_path / "no-such-ffprobe")})
    with Index(broken, embedder) as index:
        report = process_library(index, progress=False)
        assert report.failed == len(LIBRARY) and "no-such-ffprobe not found" in report.errors[0]
    (library / "101" / "notes 05.mp4").write_text("not a video")
    with Index(make_settings(tmp_path, library), embedder) as index:  # ffprobe is found again; no file changed
        report = process_library(index, progress=False)
        assert (report.indexed, report.failed) == (len(LIBRARY), 1)
        records = list(index.catalogue.episodes())
        assert [r.relpath for r in records if r.status == EpisodeStatus.FAILED] == ["101/notes 05.mp4"]
        assert len(records) == len(LIBRARY) + 1  # the old failures are gone from `status`
        assert process_library(index, progress=False).failed == 0  # a bad file waits out its back-off
    eager = make_settings(tmp_path, library, process={"retry_failed_after_s": 0.0})
    with Index(eager, embedder) as index:
        assert process_library(index, progress=False).failed == 1  # due again: tried, and counted
        failed = next(r for r in index.catalogue.episodes() if r.status == EpisodeStatus.FAILED)
        assert failed.extra["attempts"] == 2 and "not a readable video" in failed.error


@pytest.mark.slow  # indexes the library
@pytest.mark.parametrize("media_dir", ["", "shared media"])
def test_previews_of_gone_episodes_and_interrupted_runs_are_deleted(library, tmp_path, embedder, media_dir):
    settings = make_settings(tmp_path, library, media_dir=str(tmp_path / media_dir) if media_dir else "")
    previews = tmp_path / media_dir if media_dir else settings.data_path / PREVIEW_DIR
    others = ["notes.txt", "12.mp4.bak", "cover.jpg"]  # a shared folder may hold other things: never ours to delete
    if media_dir:
        previews.mkdir()
        for name in others:
            (previews / name).write_bytes(b"someone else's")
    with Index(settings, embedder) as index:
        process_library(index, progress=False)
        (previews / "99999.mp4").write_bytes(b"left by a removed episode")
        (previews / "7.mp4.part").write_bytes(b"left by a killed run")
        (previews / "7.moments.mp4.part").write_bytes(b"left by a killed run")
        report = process_library(index, progress=False)
        assert report.previews_deleted == 3
        named = _named_files(index)
        kept = sorted(others) if media_dir else []
        assert sorted(p.name for p in previews.iterdir()) == sorted(named + kept)
        assert not (settings.data_path / PREVIEW_DIR).exists() or not media_dir
        process_library(index, reindex=True, progress=False)  # a reindex leaves none of the old ones behind
        named = _named_files(index)
        assert sorted(p.name for p in previews.iterdir()) == sorted(named + kept) and len(named) == 2 * len(LIBRARY)


def _named_files(index: Index) -> list[str]:
    """The preview and moment track files the catalogue's records name."""
    return sorted(Path(name).name for r in index.catalogue.episodes() for name in (r.preview, r.moments) if name)


def _race_for_key(path: str, start, out) -> None:
    start.wait()
    out.put(read_or_create_key(Path(path)))


@pytest.mark.slow  # 120 processes
def test_processes_racing_to_create_the_key_all_read_the_same_whole_key(tmp_path):
    context = multiprocessing.get_context("fork")
    for trial in range(30):
        path = tmp_path / f"trial{trial}" / "preview.key"
        start, out = context.Barrier(4), context.Queue()
        racers = [context.Process(target=_race_for_key, args=(str(path), start, out)) for _ in range(4)]
        for racer in racers:
            racer.start()
        keys = [out.get(timeout=30) for _ in racers]
        for racer in racers:
            racer.join(10)
        assert len(set(keys)) == 1 and len(keys[0]) == 32, f"trial {trial}: {[len(k) for k in keys]}"
        assert path.read_bytes() == keys[0] and path.stat().st_mode & 0o777 == 0o600
        assert sorted(p.name for p in path.parent.iterdir()) == ["preview.key"]  # no temporary file left


@pytest.mark.slow
def test_the_cli_says_each_failure_once_and_refuses_a_missing_library_in_one_line(tmp_path, library_template):
    workdir = tmp_path / "install"
    shutil.copytree(library_template, workdir / "library")
    (workdir / "library" / "101" / "notes 05.mp4").write_text("not a video")
    out = run_cli(["-q", "process"], workdir)
    assert out.returncode == 0 and out.stderr.count("notes 05.mp4: not a readable video") == 1, out.stderr
    shutil.rmtree(workdir / "library")
    out = run_cli(["-q", "process"], workdir)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.strip().splitlines() == [
        f"error: the library folder {workdir / 'library'} does not exist (not mounted? a typo in library_dir?); "
        "nothing was changed. `process --allow-empty` indexes an empty library"
    ]
