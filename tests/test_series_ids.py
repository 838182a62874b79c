"""Integer series ids (trace.moe's `anilist`): the AniList id when the folder or series.json gives one, else a
stable id of the catalogue's; in a real LevelDB catalogue."""

from __future__ import annotations

import logging

from animeback.ingest.library import anilist_id
from animeback.stores.catalogue import ASSIGNED_SERIES_NUMBERS, Catalogue


def test_the_anilist_id_comes_from_series_json_then_a_numeric_folder(caplog):
    assert anilist_id("bbb", {"anilist": 21}) == 21
    assert anilist_id("21", {}) == 21
    assert anilist_id("21", {"anilist": 5}) == 5  # series.json wins over the folder name
    assert anilist_id("007", {}) == 7
    assert anilist_id("28223", {"source": "bilibili"}) is None  # a bilibili season id, not AniList's
    assert anilist_id("28223", {"source": "bilibili", "anilist": 21}) == 21
    for folder in ("bbb", "Sintel 2010", "0", "99999999999", "٣٤"):  # Arabic-Indic digits are not an id
        assert anilist_id(folder, {}) is None, folder
    with caplog.at_level(logging.WARNING):
        for bad in ("21", 2.5, True, -3, 0, 2**31):
            assert anilist_id("bbb", {"anilist": bad}) is None
    assert caplog.text.count("is not an AniList id") == 6


def test_assigned_numbers_are_stable_distinct_and_follow_series_json(tmp_path):
    catalogue = Catalogue.open_local(tmp_path / "catalogue")
    try:
        bbb = catalogue.assign_series_number("bbb")
        sintel = catalogue.assign_series_number("sintel")
        assert bbb in ASSIGNED_SERIES_NUMBERS and sintel in ASSIGNED_SERIES_NUMBERS and bbb != sintel
        assert catalogue.assign_series_number("bbb") == bbb  # kept across runs
        assert catalogue.assign_series_number("21", 21) == 21
        assert catalogue.series_numbers(["bbb", "21", "never seen"]) == {"bbb": bbb, "21": 21}
        # a series.json that names its AniList entry later moves the series to it; the old number is freed
        assert catalogue.assign_series_number("bbb", 130003) == 130003
        assert catalogue.series_with_number(bbb) == [] and catalogue.series_with_number(130003) == ["bbb"]
        # two folders of one AniList entry (a season split in two) share its number
        catalogue.assign_series_number("bbb part 2", 130003)
        assert catalogue.series_with_number(130003) == ["bbb", "bbb part 2"]
    finally:
        catalogue.close()
    # the same folder name gets the same number in a new catalogue (a rebuilt index keeps clients' ids)
    fresh = Catalogue.open_local(tmp_path / "other")
    try:
        assert fresh.assign_series_number("sintel") == sintel
    finally:
        fresh.close()


def test_a_taken_hash_moves_on_to_a_free_number(tmp_path):
    catalogue = Catalogue.open_local(tmp_path / "catalogue")
    try:
        natural = catalogue.assign_series_number("sintel")
        catalogue.assign_series_number("sintel", 5)  # frees `natural`, then an explicit id takes it
        catalogue.assign_series_number("squatter", natural)
        moved = catalogue.assign_series_number("sintel", None)
        assert moved == 5  # a series keeps the number it has
        catalogue.values.write({b"series-number/sintel": None})  # as if sintel were new: its hash is now taken
        catalogue.values.write({b"series-by-number/%010d/sintel" % 5: None})
        assert catalogue.assign_series_number("sintel") == natural + 1
    finally:
        catalogue.close()
