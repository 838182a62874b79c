"""Grouping hits into scenes (pure logic on Hit values)."""

import dataclasses

import pytest

from animeback.query.search import HALF_CODE_PENALTY, HALF_ENTRY_PENALTY, group_hits, merge_variant_hits, moment
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
