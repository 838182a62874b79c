"""The episode parser on real release-name patterns of the common groups, scene and media-server tools, and names
that hold numbers that are no episode (years, resolutions, clip times, dates)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from animeback.ingest.library import parse_episode_number

CORPUS = Path(__file__).parent / "data" / "release_names.tsv"
NAMES = [
    tuple(line.split("\t"))
    for line in CORPUS.read_text(encoding="utf-8").splitlines()
    if line.strip() and not line.startswith("#")
]


def test_the_corpus_is_large_enough():
    assert len(NAMES) >= 50 and sum(json.loads(e) is None for _, e in NAMES) >= 10


@pytest.mark.parametrize(("name", "expected"), NAMES, ids=[n for n, _ in NAMES])
def test_episode_number_of_a_release_name(name, expected):
    assert parse_episode_number(name) == json.loads(expected)
