"""The exact moment (query/refine.py, search.refine): `at` is the frame on screen, from..to the span of the
same picture, decoded from the real moment track that `process` wrote (or the preview, for an episode indexed
before there were moment tracks); a track that cannot be read loses nothing."""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from animeback.index import Index
from animeback.ingest.indexer import process_library
from animeback.query.refine import (
    ACCEPT_SCORE,
    SURE_SCORE,
    Crop,
    FrameReader,
    ReaderPool,
    exact_moment,
    find_moment,
)
from animeback.query.search import Searcher
from animeback.sources.synthetic import episode_scenes, grab_frame, make_episode
from tests.conftest import LIBRARY, make_settings

FRAME_S = 1 / 24  # the generated episodes' frame rate
SERIES, NAME, SEED, DURATION = LIBRARY[0]


def _moving_times(
    count: int, kinds: tuple[str, ...] = ("mandelbrot", "life", "cellauto"), seed: int = SEED
) -> list[float]:
    """Times inside the moving scenes (of these kinds) of an episode, away from its cuts, at odd fractions of a
    second."""
    moving = [(a, b) for kind, a, b in episode_scenes(seed, DURATION) if kind in kinds and b - a > 2.5]
    times = [a + 1.0 + (b - a - 2.0) * f for a, b in moving for f in (0.13, 0.61)]
    return [round(t, 3) for t in times[:count]]


def _shown(t: float) -> float:
    """The time of the frame ffmpeg grabs at `-ss t`: the first one starting at or after t."""
    return math.ceil(t / FRAME_S - 1e-6) * FRAME_S


def _still_scene() -> tuple[float, float]:
    return next((a, b) for kind, a, b in episode_scenes(SEED, DURATION) if kind == "static")


def _shot(video, t, tmp_path, vf=None) -> np.ndarray:
    out = grab_frame(video, t, tmp_path / f"shot-{t:.3f}.png", vf)
    return np.asarray(Image.open(out).convert("RGB"))


def _searcher(index: Index, refine: int) -> Searcher:
    return Searcher(index, dataclasses.replace(index.settings.search, refine=refine))


def test_at_is_the_frame_on_screen_in_a_moving_scene_and_from_to_a_fraction_of_a_second(
    indexed, library_template, tmp_path
):
    index, _ = indexed
    video = library_template / SERIES / NAME
    refined, stored = [], []
    for t in _moving_times(6):
        rgb = _shot(video, t, tmp_path)
        best = _searcher(index, 1).search(rgb).matches[0]
        plain = _searcher(index, 0).search(rgb).matches[0]
        assert best.filename == plain.filename == NAME
        shown = _shown(t)
        refined.append(abs(best.at - shown))
        stored.append(abs(plain.at - shown))
        # A slow zoom's neighbouring frames differ less than the preview's compression does: a few frames' slack.
        assert best.start - 4 * FRAME_S <= shown <= best.end + 4 * FRAME_S, (shown, best.start, best.end)
        assert best.end - best.start <= 4 * FRAME_S, (t, best.start, best.end)
    print("|at - t| refined", np.round(refined, 3), "stored frames", np.round(stored, 3))
    assert max(refined) <= 4 * FRAME_S + 1e-3
    assert np.median(refined) <= 1e-3  # most often the very frame
    assert np.mean(refined) < np.mean(stored) / 2  # the stored frames are a third of a second apart


def test_a_crop_it_cannot_place_keeps_the_stored_frames_moment(indexed, library_template, tmp_path):
    # Life's cells blur away at the 160 px the frames are compared at, so a shrunk crop of them finds no place on
    # any frame (crops of real footage are placed: benchmarks/README.md). Not placed, it must change nothing.
    index, _ = indexed
    series, name, seed, _ = LIBRARY[1]
    for t in _moving_times(4, ("life",), seed):
        crop = "crop=iw*0.8:ih*0.8:iw*0.05:ih*0.15,scale=iw/2:-2"
        rgb = _shot(library_template / series / name, t, tmp_path, vf=crop)
        best = _searcher(index, 1).search(rgb).matches[0]
        stored = _searcher(index, 0).search(rgb).matches[0]
        assert best.filename == stored.filename == name
        assert abs(best.at - _shown(t)) <= FRAME_S + 1e-3 or (best.start, best.at, best.end) == (
            stored.start,
            stored.at,
            stored.end,
        )


def test_a_still_shot_is_answered_with_its_whole_extent(indexed, library_template, tmp_path):
    index, _ = indexed
    start, end = _still_scene()
    t = round((start + end) / 2 + 0.21, 3)
    best = _searcher(index, 1).search(_shot(library_template / SERIES / NAME, t, tmp_path)).matches[0]
    assert best.filename == NAME
    assert start - 0.5 <= best.start <= t <= best.end <= end + 0.5
    assert best.end - best.start >= (end - start) - 1.0, (start, end, best.start, best.end)
    # Every frame of the still ties: `at` is the one nearest the stored frames' moment, not the still's first frame
    plain = _searcher(index, 0).search(_shot(library_template / SERIES / NAME, t, tmp_path)).matches[0]
    assert abs(best.at - plain.at) <= 0.1 and best.at - best.start > 0.5, (best.start, best.at, plain.at)


def test_exact_moment_on_the_preview_finds_a_frame_between_the_stored_ones(tmp_path):
    video = make_episode(tmp_path / "ep.mp4", seed=SEED, duration=DURATION, audio=False)
    for t in _moving_times(4):
        with FrameReader(video, None) as reader:
            # search's moment 0.9 s off in a scene of 3 s: the query's frame lies beyond the first frames read
            found = exact_moment(_shot(video, t, tmp_path), reader, t - 0.9, t - 1.5, t + 1.5)
        assert found is not None and abs(found.at - _shown(t)) <= 1e-3, (t, found)


def test_an_episode_without_a_moment_track_is_refined_from_its_preview_and_one_unreadable_loses_nothing(
    tmp_path, library_template, embedder, caplog
):
    library = tmp_path / "library"
    shutil.copytree(library_template / SERIES, library / SERIES, ignore=shutil.ignore_patterns("*02*"))
    settings = make_settings(tmp_path, library)
    with Index(settings, embedder) as index:
        process_library(index, progress=False)
        (record,) = index.catalogue.episodes()
        assert record.moments and settings.preview_path(record.moments).is_file()
        times = _moving_times(3)
        shots = [_shot(library / SERIES / NAME, t, tmp_path) for t in times]
        from_track = [_searcher(index, 1).search(rgb).matches[0] for rgb in shots]
        stored = [_searcher(index, 0).search(rgb).matches[0] for rgb in shots]
        # As an index made before moment tracks: the record names none, and the preview is read.
        index.catalogue.put_episode(dataclasses.replace(record, moments=None))
        from_preview = [_searcher(index, 1).search(rgb).matches[0] for rgb in shots]
        index.catalogue.put_episode(record)
        settings.preview_path(record.moments).write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)
        with caplog.at_level(logging.WARNING, logger="animeback.query.refine"):
            broken = _searcher(index, 1).search(shots[0]).matches[0]
    for t, track, preview in zip(times, from_track, from_preview):
        assert abs(track.at - _shown(t)) <= FRAME_S + 1e-3 and abs(preview.at - _shown(t)) <= FRAME_S + 1e-3
    assert (broken.at, broken.start, broken.end) == (stored[0].at, stored[0].start, stored[0].end)
    assert "exact moment: cannot read" in caplog.text


def test_find_moment_on_a_file_that_is_not_a_video_is_none(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_text("not a video")
    assert find_moment(ReaderPool(), junk, None, np.zeros((90, 160, 3), np.uint8), 1.0, 0.0, 2.0) is None


def test_the_reader_pool_reuses_a_video_s_reader_but_not_a_replaced_file_s_or_a_failed_one(tmp_path):
    video = make_episode(tmp_path / "ep.mp4", seed=SEED, duration=3.0, audio=False)
    pool = ReaderPool(size=2)
    with pool.reader(video, None) as first, pool.reader(video, None) as second:  # two searches at once
        assert second is not first
    with pool.reader(video, None) as again:
        assert again in (first, second)
        times, _ = again.read(1.0, 1.2)
        assert times and 0.95 <= times[0] <= 1.05
    with pool.reader(video, Crop(0.0, 0.25, 1.0, 0.5)) as cropped:  # the same file, another picture place
        assert cropped not in (first, second) and cropped.read(1.0, 1.1)[1][0].shape == (45, 160)
    assert pool.idle == 2  # at most `size` idle: the least recently used was closed
    replacement = make_episode(tmp_path / "other.mp4", seed=SEED + 1, duration=3.0, audio=False)
    replacement.replace(video)  # the episode re-encoded under its name
    with pool.reader(video, None) as fresh:
        assert fresh not in (first, second)
    with pytest.raises(RuntimeError), pool.reader(video, None) as failing:
        raise RuntimeError("a read that failed")
    with pool.reader(video, None) as after:
        assert after is not failing
    pool.close()


def test_frames_of_a_gif_episode_are_read_in_grey_too(tmp_path):
    # An episode indexed before moment tracks, with previews off, is read from its own file: a GIF decodes to palette
    # or RGB pixels, not to a luma plane.
    video = make_episode(tmp_path / "ep.gif", seed=SEED, duration=3.0, audio=False)
    with FrameReader(video, None) as reader:
        times, frames = reader.read(1.0, 1.5)
    assert len(frames) >= 5 and all(f.shape[1] == 160 and f.dtype == np.float32 for f in frames)
    assert 0.9 <= times[0] <= 1.1
    # The picture ffmpeg shows at that time, in grey at the same size: not a blank or a scrambled plane.
    shown = np.asarray(
        Image.open(grab_frame(video, times[0], tmp_path / "shown.png"))
        .convert("L")
        .resize((frames[0].shape[1], frames[0].shape[0]), Image.Resampling.BOX),
        np.float32,
    )
    assert np.ptp(shown) > 50 and float(np.abs(frames[0] - shown).mean()) < 12


def _cycle(tmp_path: Path, showings: int, vf: str | None = None) -> Path:
    """An animation cycle: the same half second of ffmpeg's test pattern shown `showings` times over (through the
    filter vf, when given)."""
    cycle = tmp_path / "cycle.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=24:duration=0.5", str(cycle)],
        check=True,
    )
    video = tmp_path / "looped.mp4"
    loop = ["-stream_loop", str(showings - 1), "-i", str(cycle), *(["-vf", vf] if vf else [])]
    subprocess.run(["ffmpeg", "-v", "error", *loop, "-g", "24", "-bf", "0", str(video)], check=True)
    return video


def test_a_picture_shown_again_and_again_gets_a_from_to_over_every_showing(tmp_path):
    # Any showing may be the moment.
    video = _cycle(tmp_path, 4)
    rgb = _shot(video, 1.2, tmp_path)
    with FrameReader(video, None) as reader:
        found = exact_moment(rgb, reader, 1.45, 0.0, 2.0)
    showings = [_shown(1.2) + k * 0.5 for k in (-2, -1, 0, 1)]
    assert found is not None and min(abs(found.at - shown) for shown in showings) <= 1e-3
    assert found.start <= showings[0] + 1e-3 and found.end >= showings[-1], found


def test_a_blurred_picture_of_an_animation_cycle_gets_a_from_to_over_every_showing_in_reach(tmp_path):
    # Blurred, the picture is not surely its frame's (under SURE_SCORE), yet plainly the cycle's (over ACCEPT_SCORE):
    # its showings two seconds from search's moment may be the moment as well as those one second from it.
    video = _cycle(tmp_path, 10)
    rgb = _shot(video, 1.2, tmp_path, vf="gblur=sigma=10")
    with FrameReader(video, None) as reader:
        found = exact_moment(rgb, reader, 2.5, 0.0, 5.0)
    assert found is not None and ACCEPT_SCORE <= found.likeness < SURE_SCORE, found
    showings = [_shown(1.2) + k * 0.5 for k in range(-1, 7)]  # those within MAX_REACH_S (2 s) of 2.5
    assert min(abs(found.at - shown) for shown in showings) <= 2 * FRAME_S + 1e-3, found
    assert found.start <= showings[0] + 2 * FRAME_S and found.end >= showings[-1], found


def test_at_is_the_query_s_own_showing_of_a_cycle_whose_showings_differ_a_little(tmp_path):
    # Grain that changes every frame: each showing scores within SAME_PICTURE of the query's own, which scores best.
    video = _cycle(tmp_path, 10, vf="noise=alls=12:allf=t")
    rgb = _shot(video, 1.2, tmp_path)
    with FrameReader(video, None) as reader:
        found = exact_moment(rgb, reader, 2.5, 0.0, 5.0)
    assert found is not None and abs(found.at - _shown(1.2)) <= 1e-3, found
    assert found.start <= _shown(0.7) + 1e-3 and found.end >= _shown(4.2), found


def test_a_shot_nearly_like_the_query_does_not_hide_its_own_seconds_away_in_the_scene(tmp_path):
    # Two stills in one scene: the query's picture, then the same with a small dark square on it (0.97 like it, sure
    # but not certain). Search's moment lies in the second; the query's own still is beyond what is read around it,
    # and is found by its keyframes.
    rng = np.random.default_rng(5)
    smooth = cv2.GaussianBlur(rng.uniform(0, 255, (360, 640, 3)).astype(np.float32), (0, 0), 6.0)
    picture = cv2.normalize(smooth, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    marked = picture.copy()
    marked[100:130, 200:230] = 30
    Image.fromarray(picture).save(tmp_path / "picture.png")
    Image.fromarray(marked).save(tmp_path / "marked.png")
    video = tmp_path / "two-stills.mp4"
    stills = ["-loop", "1", "-t", "2", "-i", str(tmp_path / "picture.png")]
    stills += ["-loop", "1", "-t", "3", "-i", str(tmp_path / "marked.png")]
    joined = ["-filter_complex", "[0][1]concat=n=2:v=1,fps=24,format=yuv420p", "-g", "24"]
    subprocess.run(["ffmpeg", "-v", "error", *stills, *joined, str(video)], check=True)
    with FrameReader(video, None) as reader:
        found = exact_moment(picture, reader, 4.0, 0.0, 5.0)
    assert found is not None and found.at < 2.0 and found.likeness >= 0.99, found
    # (from..to runs on to the scene's end: a still reaching past the frames read is taken to last the scene.)
    assert found.start <= 0.1, found


def _test_pattern(tmp_path, vf: str | None = None) -> Path:
    """Four seconds of ffmpeg's moving test pattern (through the filter vf, when given): every frame differs from its
    neighbours all over."""
    video = tmp_path / ("pattern.mp4" if vf is None else "pattern-filtered.mp4")
    source = ["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=24:duration=4"]
    subprocess.run(["ffmpeg", "-v", "error", *source, *(["-vf", vf] if vf else []), str(video)], check=True)
    return video


def _meme(shot: np.ndarray, text: str) -> np.ndarray:
    """The picture under a meme's white caption bar (a fifth of its height) with a line of black text."""
    h, w = shot.shape[:2]
    bar = np.full((h // 5, w, 3), 255, np.uint8)
    cv2.putText(bar, text, (20, h // 8), cv2.FONT_HERSHEY_DUPLEX, 0.8, (0, 0, 0), 2, cv2.LINE_AA)
    return np.concatenate([bar, shot])


def test_a_half_frame_is_placed_on_its_own_frame_when_search_s_moment_is_more_than_half_a_second_off(tmp_path):
    # Between search's moment and the query's frame the picture moved: on the frame search matched, a half fits
    # only at a wrong place and size, and it must be looked for on the frames around.
    video = _test_pattern(tmp_path)
    for t in (1.23, 2.07, 2.71):
        shot = _shot(video, t, tmp_path)
        h, w = shot.shape[:2]
        for half in (shot[:, : w // 2], shot[:, w // 2 :], shot[: h // 2], shot[h // 2 :]):
            with FrameReader(video, None) as reader:
                found = exact_moment(half, reader, t + 0.6, 0.0, 4.0)
            assert found is not None and abs(found.at - _shown(t)) <= FRAME_S + 1e-3, (t, half.shape, found)


def test_a_meme_s_caption_bar_and_burnt_in_subtitles_do_not_hide_the_moment(tmp_path):
    video = _test_pattern(tmp_path)
    for t in (1.23, 2.07, 2.71):
        shot = _shot(video, t, tmp_path)
        h, w = shot.shape[:2]
        meme = _meme(shot, "NOBODY:")
        subtitled = np.ascontiguousarray(shot[h // 20 : h - h // 20, w // 20 : w - w // 20])
        for line, y in (("I told you we have to go", 0.8), ("right now, look out!", 0.9)):
            org = (w // 8, int(subtitled.shape[0] * y))
            cv2.putText(subtitled, line, org, cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 5, cv2.LINE_AA)
            cv2.putText(subtitled, line, org, cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2, cv2.LINE_AA)
        for query in (meme, subtitled):
            with FrameReader(video, None) as reader:
                found = exact_moment(query, reader, t - 0.3, 0.0, 4.0)
            assert found is not None and abs(found.at - _shown(t)) <= FRAME_S + 1e-3, (t, query.shape, found)
        # The meme's picture is a whole frame: from..to is the frame's own span, not the scene's.
        with FrameReader(video, None) as reader:
            found = exact_moment(meme, reader, t - 0.3, 0.0, 4.0)
        assert found is not None and found.end - found.start <= 2 * FRAME_S + 1e-3, found


def test_a_screenshot_turned_by_a_few_degrees_is_read_turned_back(tmp_path):
    # Turned, the picture lies over no frame as it is (nor as a crop): read turned back, it is its own frame's,
    # and from..to is that frame's span, not the scene's.
    video = _test_pattern(tmp_path)
    for t, angle in ((1.23, 2.0), (2.07, -3.0), (2.71, 1.5)):
        shot = _shot(video, t, tmp_path)
        h, w = shot.shape[:2]
        turned = cv2.warpAffine(shot, cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0), (w, h))
        with FrameReader(video, None) as reader:
            found = exact_moment(turned, reader, t - 0.3, 0.0, 4.0)
        assert found is not None and abs(found.at - _shown(t)) <= FRAME_S + 1e-3, (t, angle, found)
        assert found.end - found.start <= 2 * FRAME_S + 1e-3, found


def test_a_crop_keeping_60_percent_of_the_frame_is_read_at_its_own_frame(tmp_path):
    # 77% of the frame's side: placed down to 81% of it only (before), it fitted no frame well enough to be
    # believed, and the stored frames' moment stayed. Placed at the nearest size tried (77%, not 77.46%), it may fit
    # a frame or two beside its own as well: within two frames (the bar is half a second).
    video = _test_pattern(tmp_path)
    rng = np.random.default_rng(3)
    for t in (1.23, 2.07, 2.71):
        shot = _shot(video, t, tmp_path)
        h, w = shot.shape[:2]
        ch, cw = round(h * 0.6**0.5), round(w * 0.6**0.5)
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        with FrameReader(video, None) as reader:
            found = exact_moment(np.ascontiguousarray(shot[y : y + ch, x : x + cw]), reader, t - 0.4, 0.0, 4.0)
        assert found is not None and abs(found.at - _shown(t)) <= 2 * FRAME_S + 1e-3, (t, (x, y), found)


def test_a_caption_bar_that_runs_into_the_picture_s_own_white_edge_does_not_hide_the_moment(tmp_path):
    # The picture's top is as white as the bar above it: the bar cannot be told from the picture (caption_box takes
    # the white sky for bar too, and the rest is then only a crop of the frame), but the picture under the bar has a
    # frame's shape: a whole frame, its own frame's span.
    video = _test_pattern(tmp_path, vf="drawbox=x=0:y=0:w=iw:h=ih*0.3:color=white:t=fill")  # a white sky
    for t in (1.23, 2.71):
        meme = _meme(_shot(video, t, tmp_path), "ME:")
        with FrameReader(video, None) as reader:
            found = exact_moment(meme, reader, t - 0.3, 0.0, 4.0)
        assert found is not None and abs(found.at - _shown(t)) <= FRAME_S + 1e-3, (t, found)
        assert found.end - found.start <= 2 * FRAME_S + 1e-3, found  # a whole frame's span, not the scene's


def test_a_frame_seconds_from_search_s_moment_in_a_long_scene_is_found_by_its_keyframes(tmp_path):
    # In a slow pan the stored frames of a long scene all look alike to the CNN, and search's moment may lie seconds
    # from the query's frame, beyond what is read around it: the scene's keyframes (at least one a second, as
    # `process` writes its tracks) say where to read.
    video = tmp_path / "pan.mp4"
    source = ["-f", "lavfi", "-i", "mandelbrot=size=1280x180:rate=24", "-t", "8", "-vf", "crop=320:180:x=40*t:y=0"]
    subprocess.run(["ffmpeg", "-v", "error", *source, "-g", "24", str(video)], check=True)
    for t in (5.23, 6.71):
        shot = _shot(video, t, tmp_path)
        with FrameReader(video, None) as reader:
            found = exact_moment(shot, reader, 1.0, 0.0, 8.0)
        assert found is not None and abs(found.at - _shown(t)) <= FRAME_S + 1e-3, (t, found)
        assert found.end - found.start <= 2 * FRAME_S + 1e-3, found
    with FrameReader(video, None) as reader:
        times, frames = reader.keyframes(0.0, 8.0)
    assert times[0] == 0.0 and 8 <= len(times) <= 16 and max(np.diff(times)) <= 1.0 + 1e-3, times
    assert len(frames) == len(times)


def test_a_screenshot_with_the_letterbox_or_pillarbox_bars_left_on_is_read_between_them(tmp_path):
    # A dark picture runs into its black bars, so search could not cut them (a night sky inside a 4:3 letterbox):
    # the picture between the bars has the frame's shape and is read there as a whole frame, its own frame's span.
    video = _test_pattern(tmp_path)
    for t in (1.23, 2.71):
        shot = _shot(video, t, tmp_path)
        h, w = shot.shape[:2]
        letterboxed = cv2.copyMakeBorder(shot, h // 6, h // 6, 0, 0, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        pillarboxed = cv2.copyMakeBorder(shot, 0, 0, w // 5, w // 5, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        for query in (letterboxed, pillarboxed):
            with FrameReader(video, None) as reader:
                found = exact_moment(query, reader, t - 0.3, 0.0, 4.0)
            assert found is not None and abs(found.at - _shown(t)) <= FRAME_S + 1e-3, (t, query.shape, found)
            assert found.end - found.start <= 2 * FRAME_S + 1e-3, found


def test_a_half_frame_found_on_its_frames_is_answered_as_sure_and_a_picture_of_no_episode_is_not(
    indexed, library_template, tmp_path
):
    # A half's vector meets its whole frame's at 0.7 or so, under the false-match threshold; placed on the episode's
    # frames pixel for pixel, the answer is sure. A picture of no indexed episode finds no such frame: nothing rises.
    index, _ = indexed
    raised = []
    for t in _moving_times(2):
        shot = _shot(library_template / SERIES / NAME, t, tmp_path)
        w = shot.shape[1]
        for half in (shot[:, : w // 2], shot[:, w // 2 :]):
            best = _searcher(index, 1).search(half).matches[0]
            plain = _searcher(index, 0).search(half).matches[0]
            assert best.filename == plain.filename == NAME
            assert best.similarity >= plain.similarity
            raised.append((round(plain.similarity, 3), round(best.similarity, 3)))
    print("half frames' similarity, stored frames -> refined", raised)
    assert sum(refined >= 0.94 > plain for plain, refined in raised) >= len(raised) // 2, raised
    other = tmp_path / "not-indexed.mp4"
    make_episode(other, seed=97, duration=8.0)
    # (Its cellular automaton and Life scenes: its still shot is one of the few Mandelbrot points the indexed episodes'
    # stills show too, in another hue at a nearby zoom, so that in grey it is a crop of theirs.)
    for t in (1.4, 2.3, 3.7):
        shot = _shot(other, t, tmp_path)
        for picture in (shot, shot[:, : shot.shape[1] // 2]):
            best = _searcher(index, 1).search(picture).matches[0]
            plain = _searcher(index, 0).search(picture).matches[0]
            assert (best.similarity, best.at) == (plain.similarity, plain.at)


def test_a_doubtful_scene_with_no_frame_roughly_like_the_query_is_not_read_on(tmp_path):
    # Half of a frame of the test pattern is roughly like its own frames: read as doubtful, it is still found. A
    # generated episode's picture is like none of them: None at once, as without the doubt after the full reading.
    video = _test_pattern(tmp_path)
    shot = _shot(video, 2.07, tmp_path)
    with FrameReader(video, None) as reader:
        found = exact_moment(shot[:, : shot.shape[1] // 2], reader, 2.2, 0.0, 4.0, doubtful=True)
    assert found is not None and abs(found.at - _shown(2.07)) <= FRAME_S + 1e-3, found
    other = tmp_path / "other.mp4"
    make_episode(other, seed=98, duration=6.0)
    stranger = _shot(other, 3.1, tmp_path)
    with FrameReader(video, None) as reader:
        assert exact_moment(stranger, reader, 2.2, 0.0, 4.0, doubtful=True) is None
        assert exact_moment(stranger, reader, 2.2, 0.0, 4.0) is None


def test_a_scene_whose_frames_do_not_show_the_picture_makes_room_for_the_next_one(indexed, library_template, tmp_path):
    # The vectors may rank another scene of the episode first by a hair (a repeated pose, a long shot): its frames
    # do not show the picture, the next scene's do, and that one is answered first, found on its frames.
    from animeback.query.search import SceneMatch

    index, _ = indexed
    searcher = _searcher(index, 1)
    (record,) = [r for r in index.catalogue.episodes() if r.filename == NAME]
    scenes = [(a, b) for kind, a, b in episode_scenes(SEED, DURATION) if kind != "static"]
    t = _moving_times(1)[0]
    own = next((a, b) for a, b in scenes if a <= t <= b)
    other = next((a, b) for a, b in scenes if (a, b) != own)

    def scene(span: tuple[float, float], similarity: float) -> SceneMatch:
        a, b = span
        return SceneMatch(SERIES, record.id, NAME, 1, DURATION, a, (a + b) / 2, b, similarity)

    picture = _shot(library_template / SERIES / NAME, t, tmp_path)
    look_alike, right = scene(other, 0.80), scene(own, 0.79)
    first, second = searcher._refined([look_alike, right], {record.id: record}, picture, [])
    assert first.start <= _shown(t) <= first.end and abs(first.at - _shown(t)) <= FRAME_S + 1e-3, first
    assert first.similarity > 0.9 and second == look_alike
    # Not when the next scene is far less similar, nor with search.refine 0.
    assert searcher._refined([look_alike, scene(own, 0.70)], {record.id: record}, picture, [])[0] == look_alike
    assert _searcher(index, 0)._refined([look_alike, right], {record.id: record}, picture, []) == [look_alike, right]
