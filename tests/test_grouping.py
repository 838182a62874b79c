"""Grouping hits into scenes (pure logic on Hit values)."""

import dataclasses

import pytest

from animeback.query.refine import UNSURE_REACH_S
from animeback.query.search import (
    HALF_CODE_PENALTY,
    HALF_ENTRY_PENALTY,
    SceneMatch,
    group_hits,
    merge_variant_hits,
    moment,
    refine_starts,
)
from animeback.stores import Hit
from animeback.stores.catalogue import MAX_SAMPLES, frame_id, whole_frame_id


def hit(i, episode, t, sim, span=1.0):
    return Hit(i, episode, "s", t, t, t + span, sim)


def test_a_still_shot_stored_as_several_frames_is_one_scene_covering_it():
    hits = [hit(i, 1, 10.0 + i, 0.99 - 0.001 * (i % 3)) for i in range(12)]  # 10..22 s, all as good
    ((best, lo, hi),) = group_hits(hits, gap=5.0, tolerance=0.02, limit=10)
    assert (lo, hi) == (10.0, 22.0) and lo <= best.time <= hi


def test_weaker_neighbours_are_absorbed_and_other_episodes_stay_apart():
    hits = [hit(1, 1, 50.0, 0.95), hit(2, 1, 52.0, 0.80), hit(3, 2, 50.0, 0.90), hit(4, 1, 200.0, 0.85)]
    groups = group_hits(hits, gap=5.0, tolerance=0.02, limit=10)
    assert [(g[0].id, g[1], g[2]) for g in groups] == [(1, 50.0, 51.0), (3, 50.0, 51.0), (4, 200.0, 201.0)]
    assert len(group_hits(hits, gap=5.0, tolerance=0.02, limit=2)) == 2


def test_variants_keep_each_frames_best_score():
    merged = merge_variant_hits([[hit(1, 1, 0, 0.5), hit(2, 1, 5, 0.7)], [hit(1, 1, 0, 0.9)]])
    assert sorted((h.id, h.similarity) for h in merged) == [(1, 0.9), (2, 0.7)]


def test_a_frames_half_entries_count_as_that_frame():
    whole, left, top = frame_id(7, 42), frame_id(7, 42, region=1), frame_id(7, 42, region=3)
    assert len({whole, left, top}) == 3 and whole_frame_id(left) == whole_frame_id(top) == whole
    assert whole_frame_id(frame_id(7, MAX_SAMPLES - 1, region=4)) < frame_id(8, 0)  # episodes' ranges stay apart
    merged = merge_variant_hits([[hit(left, 7, 14.0, 0.9), hit(whole, 7, 14.0, 0.6)], [hit(top, 7, 14.0, 0.7)]])
    assert [(h.id, h.similarity) for h in merged] == [(whole, pytest.approx(0.9 - HALF_ENTRY_PENALTY))]


def test_a_coded_half_counts_less_than_a_float_half():
    whole, left = frame_id(7, 42), frame_id(7, 42, region=1)
    coded = dataclasses.replace(hit(left, 7, 14.0, 0.9), coded=True)
    assert HALF_CODE_PENALTY > HALF_ENTRY_PENALTY
    assert [(h.id, h.similarity) for h in merge_variant_hits([[coded]])] == [
        (whole, pytest.approx(0.9 - HALF_CODE_PENALTY))
    ]
    # a whole-frame match a little below the coded half's estimate wins
    merged = merge_variant_hits([[coded, hit(frame_id(7, 50), 7, 16.7, 0.9 - HALF_CODE_PENALTY + 0.01)]])
    assert max(merged, key=lambda h: h.similarity).id == frame_id(7, 50)


def test_at_equal_scores_a_whole_frame_beats_another_frames_half():
    other_half, whole = frame_id(7, 68, region=2), frame_id(7, 42)
    merged = merge_variant_hits([[hit(other_half, 7, 22.7, 0.885), hit(whole, 7, 14.0, 0.883)]])
    assert max(merged, key=lambda h: h.similarity).id == whole


def test_the_moment_of_a_still_shot_is_its_middle_frame_not_its_first():
    hits = [hit(i, 1, 10.0 + i, 0.990 + 0.001 * (i == 0)) for i in range(7)]  # 10..16 s, all but tied
    ((best, lo, hi),) = group_hits(hits, gap=5.0, tolerance=0.02, limit=10)
    assert best.time == 10.0 and moment(best, lo, hi, hits, tie=0.005) == 13.0
    moving = [hit(1, 1, 10.0, 0.99), hit(2, 1, 11.0, 0.95), hit(3, 1, 12.0, 0.94)]  # a clear best frame
    ((best, lo, hi),) = group_hits(moving, gap=5.0, tolerance=0.02, limit=10)
    assert moment(best, lo, hi, moving, tie=0.005) == 10.0


def test_refine_looks_again_from_the_best_hit_when_a_slow_zoom_put_the_moment_far_from_it():
    # A zoom's stored frames tie, so the middle one (9.0) is reported; the query's own frame scored best at 7.5.
    hits = [hit(1, 1, 7.5, 0.97), hit(2, 1, 8.5, 0.965), hit(3, 1, 9.0, 0.965), hit(4, 1, 10.0, 0.96)]
    hits += [hit(5, 2, 8.0, 0.99), hit(6, 1, 30.0, 0.99)]  # another episode's, and this one's outside the span
    match = SceneMatch("s", 1, "ep.mkv", 1, 60.0, 6.5, 9.0, 11.0, 0.97)
    assert refine_starts(match, hits) == [9.0, 7.5]
    near = dataclasses.replace(match, at=7.5 + UNSURE_REACH_S)  # the first look reads that far: no second one
    assert refine_starts(near, hits) == [near.at]
    assert refine_starts(match, []) == [9.0]
