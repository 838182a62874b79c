"""Repeated sequences: detection on made-up frames, then a generated season (shared opening and ending) indexed with
and without `repeats`, its answers over the API, and removal of the episode that holds the stored copy."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from animeback.config import RepeatSettings
from animeback.index import Index
from animeback.ingest.indexer import process_library
from animeback.ingest.repeats import classify, find_repeats
from animeback.query.search import Searcher
from animeback.sources.synthetic import SeasonEpisode, grab_frame, make_season
from animeback.stores import Hit, SegmentKind
from animeback.stores.vectors import FrameSpan
from animeback.web import create_app
from tests.conftest import make_settings
from tests.test_cli import run_cli

SETTINGS = RepeatSettings()


def _frames(episode: int, times: list[float], end: float) -> list[FrameSpan]:
    bounds = [*times[1:], end]
    return [FrameSpan(episode * 1000 + i, episode, "s", t, t, e) for i, (t, e) in enumerate(zip(times, bounds))]


def _hit(frame: FrameSpan, holder: int, offset: float, similarity: float = 0.95) -> Hit:
    return Hit(
        holder * 1000 + round(frame.time * 3),
        holder,
        "s",
        frame.time + offset,
        frame.start + offset,
        frame.end + offset,
        similarity,
    )


def test_a_stretch_matching_another_episode_in_order_is_found_with_its_offset():
    times = [i / 3 for i in range(3 * 60)]
    frames = _frames(2, times, 60.0)
    # 5..25 s of this episode show episode 1 at 7..27 s: an opening that starts 2 s later there
    hits = [[_hit(f, 1, 2.0)] if 5 <= f.time < 25 else [] for f in frames]
    found = find_repeats(2, 60.0, frames, hits, {1: 60.0}, SETTINGS)
    (repeat,) = found.repeats
    assert (repeat.kind, repeat.holder, repeat.offset) == (SegmentKind.OPENING, 1, 2.0)
    assert repeat.start == pytest.approx(5.0) and repeat.end == pytest.approx(25.0)
    assert len(found.frame_ids) == 60 and repeat.to_holder(10.0) == 12.0 and repeat.from_holder(12.0) == 10.0


def test_short_stretches_weak_matches_and_look_alikes_without_one_offset_are_not_repeats():
    times = [i / 3 for i in range(3 * 60)]
    frames = _frames(2, times, 60.0)
    short = [[_hit(f, 1, 0.0)] if 20 <= f.time < 28 else [] for f in frames]  # 8 s: under min_seconds
    assert find_repeats(2, 60.0, frames, short, {1: 60.0}, SETTINGS).repeats == []
    weak = [[_hit(f, 1, 0.0, similarity=0.7)] if 20 <= f.time < 40 else [] for f in frames]
    assert find_repeats(2, 60.0, frames, weak, {1: 60.0}, SETTINGS).repeats == []
    # every frame of 20..40 s looks like some frame of episode 1, but each at another time: scenes alike, not a copy
    scattered = [[_hit(f, 1, (i * 7.3) % 30 - 15)] if 20 <= f.time < 40 else [] for i, f in enumerate(frames)]
    assert find_repeats(2, 60.0, frames, scattered, {1: 60.0}, SETTINGS).repeats == []


def test_a_still_shot_that_looks_like_another_is_no_evidence_of_a_repeat():
    # one kept frame a second (dedupe's longest span): a held picture, alike in both episodes by chance
    times = [float(i) for i in range(60)]
    frames = _frames(2, times, 60.0)
    hits = [[_hit(f, 1, 0.0)] if 40 <= f.time < 55 else [] for f in frames]
    assert find_repeats(2, 60.0, frames, hits, {1: 60.0}, SETTINGS).repeats == []


def test_a_cut_that_skips_a_few_seconds_and_unmatched_credits_stay_one_sequence():
    times = [i / 3 for i in range(3 * 90)]
    frames = _frames(3, times, 90.0)
    hits = []
    for f in frames:
        if 70 <= f.time < 78:
            hits.append([_hit(f, 1, 0.0)])
        elif 79.5 <= f.time < 88:  # the ending here skips 3 s of episode 1's; 78..79.5 s differs (credits)
            hits.append([_hit(f, 1, 3.0)])
        else:
            hits.append([])
    found = find_repeats(3, 90.0, frames, hits, {1: 93.0}, SETTINGS)
    assert [(r.kind, r.offset) for r in found.repeats] == [(SegmentKind.ENDING, 0.0), (SegmentKind.ENDING, 3.0)]
    first, second = found.repeats
    assert first.start == pytest.approx(70.0) and first.end == second.start and second.end == pytest.approx(88.0)
    # a look-alike piece that lies elsewhere in the holder does not join the sequence next to it
    far = [[_hit(f, 1, 30.0)] if 60 <= f.time < 68 else h for f, h in zip(frames, hits)]
    pieces = find_repeats(3, 90.0, frames, far, {1: 93.0}, SETTINGS).repeats
    assert all(r.offset != 30.0 for r in pieces)


def test_labels_follow_where_the_sequence_lies_in_both_episodes():
    assert classify(0, 20, 100, 0, 20, 100) == SegmentKind.OPENING
    assert classify(85, 100, 100, 80, 95, 100) == SegmentKind.ENDING
    assert classify(2, 15, 100, 40, 53, 100) == SegmentKind.RECAP  # a previous episode's scene, at the start
    assert classify(45, 60, 100, 40, 55, 100) == SegmentKind.REPEAT
    assert classify(0, 95, 100, 0, 95, 100) == SegmentKind.REPEAT  # one episode is a copy of the other


# -- a generated season -------------------------------------------------------------------------------------------


def _repeated_frames(index: Index, season: list[SeasonEpisode]) -> int:
    """Stored frames of episodes 2.. that lie in their opening or ending (the copies of episode 1's)."""
    by_name = {r.relpath.split("/", 1)[1]: r for r in index.catalogue.episodes()}
    count = 0
    for episode in season[1:]:
        record = by_name[episode.path.name]
        rows = index.vectors.client.query(
            index.vectors.collection, filter=f"episode == {record.id}", output_fields=["time"], limit=16384
        )
        count += sum(1 for r in rows if any(lo <= r["time"] < hi for lo, hi in (episode.opening, episode.ending)))
    return count


@pytest.fixture(scope="module")
def season(tmp_path_factory, embedder):
    """A season of 4 episodes (see make_season), indexed without `repeats` (to count the copies) and with."""
    root = tmp_path_factory.mktemp("season")
    episodes = make_season(root / "library" / "Season", opening_s=14.0, middle_s=12.0, ending_s=12.0)
    plain = make_settings(root / "plain", root / "library", repeats={"enabled": False}, media={"preview": False})
    with Index(plain, embedder) as index:
        process_library(index, progress=False)
        baseline = {"vectors": index.vectors.count(), "repeated": _repeated_frames(index, episodes)}
    index = Index(make_settings(root / "once", root / "library"), embedder)
    report = process_library(index, progress=False)
    yield index, episodes, report, baseline
    index.close()


def _records(index: Index) -> dict[int, object]:
    return {int(r.relpath[-6:-4]): r for r in index.catalogue.episodes()}


def _ask(index: Index, episode: SeasonEpisode, at: float, tmp: Path):
    shot = grab_frame(episode.path, at, tmp / f"{episode.path.stem}-{at}.png")
    return Searcher(index).search_bytes(shot.read_bytes()).matches


def test_the_season_stores_its_opening_and_ending_once(season):
    index, episodes, report, baseline = season
    records = _records(index)
    assert records[1].vectors_elsewhere == 0 and not index.catalogue.repeats_of(records[1].id)
    for number in (2, 3, 4):
        repeats = index.catalogue.repeats_of(records[number].id)
        kinds = {r.kind for r in repeats}
        assert kinds == {SegmentKind.OPENING, SegmentKind.ENDING}, (number, repeats)
        assert all(r.holder == records[1].id for r in repeats)
        opening = [r for r in repeats if r.kind == SegmentKind.OPENING]
        lo, hi = episodes[number - 1].opening
        # the 2 s cold open of episode 3 moves its opening: the offset says so
        assert all(r.offset == pytest.approx(-(lo - episodes[0].opening[0]), abs=0.35) for r in opening)
        if number != 4:  # episode 4's own credits hide part of its opening's frames; the rest is found
            assert opening[0].start <= lo + 0.5 and opening[-1].end >= hi - 0.5
    for number in (1, 2, 3, 4):  # the distinct middles are not repeats
        lo, hi = episodes[number - 1].middle
        assert all(r.end <= lo + 0.5 or r.start >= hi - 0.5 for r in index.catalogue.repeats_of(records[number].id))
    dropped = baseline["vectors"] - index.vectors.count()
    assert dropped >= 0.8 * baseline["repeated"], (dropped, baseline)
    assert index.vectors.count() == index.catalogue.count_frames() == report.vectors_written
    assert sum(r.vectors_elsewhere for r in records.values()) == dropped


def test_a_screenshot_of_the_opening_answers_with_the_first_episode_and_lists_the_others(season, tmp_path):
    index, episodes, _, _ = season
    third = episodes[2]
    at = third.opening[0] + 6.4  # episode 3, inside its opening (which starts 2 s late)
    best = _ask(index, third, at, tmp_path)[0]
    assert best.segment == SegmentKind.OPENING and best.filename == episodes[0].path.name and best.episode == 1
    assert best.start - 1.0 <= at - third.opening[0] <= best.end + 1.0  # episode 1's time of the same moment
    places = {o.filename: o for o in best.occurrences}
    assert set(places) == {e.path.name for e in episodes[1:]}
    mine = places[third.path.name]
    assert mine.start - 1.0 <= at <= mine.end + 1.0 and abs(mine.at - at) <= 1.5
    assert [o.episode for o in best.occurrences] == [2, 3, 4]


def test_frames_kept_because_their_credits_differ_still_answer_as_the_opening(season, tmp_path):
    index, episodes, _, _ = season
    fourth = episodes[3]  # its own credits are burnt into its opening: some of its frames match no other's
    for at in (1.7, 4.6, 7.5, 10.4, 13.3):
        best = _ask(index, fourth, at, tmp_path)[0]
        assert best.segment == SegmentKind.OPENING and best.episode == 1, (at, best)
        mine = next(o for o in best.occurrences if o.episode == 4)
        assert mine.start - 1.0 <= at <= mine.end + 1.0


def test_ending_and_middle_screenshots(season, tmp_path):
    index, episodes, _, _ = season
    second = episodes[1]
    ending = _ask(index, second, second.ending[0] + 5.3, tmp_path)[0]
    assert ending.segment == SegmentKind.ENDING and ending.episode == 1
    assert {o.episode for o in ending.occurrences} == {2, 3, 4}
    for episode in episodes:
        at = episode.middle[0] + 4.6
        middle = _ask(index, episode, at, tmp_path)[0]
        assert middle.segment is None and middle.occurrences == []
        assert middle.filename == episode.path.name and middle.start - 1.0 <= at <= middle.end + 1.0


def test_the_api_gives_segment_and_occurrences_with_previews(season, tmp_path):
    index, episodes, _, _ = season
    client = create_app(index.settings, warm=False, index=index).test_client()
    shot = grab_frame(episodes[1].path, 8.2, tmp_path / "op.jpg")
    body = client.post("/search", data=shot.read_bytes(), content_type="image/jpeg").get_json()
    best = body["result"][0]
    assert best["segment"] == "op" and best["episode"] == 1
    assert [o["episode"] for o in best["occurrences"]] == [2, 3, 4]
    for occurrence in best["occurrences"]:
        assert set(occurrence) == {"episode", "filename", "from", "at", "to", "video", "image"}
        assert occurrence["from"] <= occurrence["at"] <= occurrence["to"]
    clip = client.get(best["occurrences"][0]["video"].replace("http://localhost", ""))
    assert clip.status_code == 200 and clip.mimetype == "video/mp4"


def test_the_cli_names_the_segment_and_the_other_episodes(season, tmp_path):
    index, episodes, _, _ = season
    shot = grab_frame(episodes[1].path, episodes[1].ending[0] + 3.3, tmp_path / "ed.png")
    env = {
        "ANIMEBACK_LIBRARY_DIR": str(index.settings.library_path),
        "ANIMEBACK_DATA_DIR": str(index.settings.data_path),
    }
    table = run_cli(["-q", "search", str(shot), "--limit", "1"], tmp_path, env)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert episodes[0].path.name in lines[1] and lines[2].strip().startswith("Ending, episodes 1-4: also ")
    assert all(e.path.name in lines[2] for e in episodes[1:])
    body = json.loads(run_cli(["-q", "search", str(shot), "--json"], tmp_path, env).stdout)
    best = body["result"][0]
    assert best["segment"] == "ed" and [o["episode"] for o in best["occurrences"]] == [2, 3, 4]


@pytest.mark.slow  # indexes three episodes again
def test_removing_the_episode_that_holds_the_copy_keeps_every_answer(season, tmp_path):
    index, episodes, _, _ = season  # runs last: it changes the season's index
    library = index.settings.library_path / "Season"
    first = episodes[0].path
    shutil.move(first, tmp_path / first.name)
    report = process_library(index, progress=False)
    assert (report.removed, report.indexed) == (1, 3)  # the episodes pointing to it are indexed again
    records = _records(index)
    assert set(records) == {2, 3, 4} and index.vectors.count() == index.catalogue.count_frames()
    holder = records[2]  # the first of them indexed again holds the copy now
    for number in (3, 4):
        assert {r.holder for r in index.catalogue.repeats_of(records[number].id)} == {holder.id}
    best = _ask(index, episodes[2], episodes[2].opening[0] + 6.4, tmp_path)[0]
    assert best.segment == SegmentKind.OPENING and best.episode == 2
    assert [o.episode for o in best.occurrences] == [3, 4]
    # an episode that points to the copy changes (encoded again): it is indexed again, the holder is not
    third = library / episodes[2].path.name
    shutil.copy(third, tmp_path / "third.mp4")
    encode = ["ffmpeg", "-v", "error", "-y", "-i", str(tmp_path / "third.mp4"), "-c:v", "libx264", "-crf", "30"]
    subprocess.run([*encode, "-preset", "veryfast", str(third)], check=True)
    report = process_library(index, progress=False)
    assert report.removed == 0 and report.indexed >= 1
    after = _records(index)
    assert after[2].id == holder.id and after[3].id != records[3].id
    ending = _ask(index, episodes[3], episodes[3].ending[0] + 5.3, tmp_path)[0]
    assert ending.segment == SegmentKind.ENDING and ending.episode == 2
    assert [o.episode for o in ending.occurrences] == [3, 4]
    assert index.vectors.count() == index.catalogue.count_frames()
