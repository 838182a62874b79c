"""The trace.moe clients people use, from PyPI and unchanged but for their base URL, against a live gunicorn whose
library mixes a numeric series folder (101), one named by series.json's AniList id (bbb, "anilist": 21) and one
with neither (Other Show). Each client's public calls: search by file, bytes and URL, with anilistInfo, cutBorders
and an anilistID filter; previews with size and mute; me and usage."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path

import pytest

from animeback.sources.synthetic import episode_scenes, grab_frame, make_episode
from tests.conftest import LIBRARY
from tests.live_server import Live, get

pytestmark = pytest.mark.live

BBB = ("bbb", "big_buck_bunny_0_30.webm", 5, 12.0)  # an AniList id from series.json; a name with no episode in it
ENTRIES = {"101": LIBRARY[0], "Other Show": LIBRARY[2], "bbb": BBB}


@pytest.fixture(scope="module")
def live(tmp_path_factory, library_template):
    live = Live(tmp_path_factory.mktemp("clients"), library_template)
    series, name, seed, duration = BBB
    make_episode(live.library / series / name, seed=seed, duration=duration)
    (live.library / series / "series.json").write_text(json.dumps({"anilist": 21, "title": "Big Buck Bunny"}))
    with live.indexed_and_serving():
        yield live


@pytest.fixture(scope="module")
def shots(live, image_host) -> dict[str, tuple[Path, float, str]]:
    """A screenshot of each series: (file, its moment, its URL on the image host)."""
    folder, base = image_host
    found = {}
    for series, (_, name, seed, duration) in ENTRIES.items():
        _, start, end = episode_scenes(seed, duration)[1]
        at = round(start + (end - start) * 0.6, 2)
        path = grab_frame(live.library / series / name, at, live.tmp / f"shot-{len(found)}.png")
        shutil.copy(path, folder / path.name)
        found[series] = (path, at, f"{base}/{path.name}")
    return found


@pytest.fixture(scope="module")
def numbers(live, shots) -> dict[str, int]:
    """Each series' integer id, as the server gives it (filtered by folder name, with plain HTTP)."""
    found = {}
    for series, (_, _, url) in shots.items():
        query = urllib.parse.urlencode({"url": url, "anilistID": series})
        status, body = get(f"{live.base}/search?{query}", 60)
        assert status == 200, body
        found[series] = json.loads(body)["result"][0]["anilist"]
    assert found["101"] == 101 and found["bbb"] == 21 and found["Other Show"] >= 1_000_000_000
    return found


def _streams(data: bytes, tmp: Path) -> list[tuple[str, int | None]]:
    """(codec type, width) of each stream of a media file."""
    path = tmp / "preview.bin"
    path.write_bytes(data)
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_type,width", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return [(s["codec_type"], s.get("width")) for s in json.loads(out.stdout)["streams"]]


def test_aiotracemoeapi(live, shots, numbers):
    from aiotracemoeapi import TraceMoe

    async def calls():
        async with TraceMoe(base_url=live.base, timeout=60) as client:
            answers = {}
            for series, (path, _, url) in shots.items():
                answers[series, "file"] = await client.search(str(path))
                answers[series, "bytes"] = await client.search(path.read_bytes(), cut_borders=True)
                answers[series, "url"] = await client.search(url, anilist_info=False)
                answers[series, "filtered"] = await client.search(str(path), anilist_id=numbers[series])
            me = await client.me()
            usage = {period: await client.usage(period) for period in ("minute", "hour", "day")}
            return answers, me, usage

    started = datetime.now(UTC)
    answers, me, usage = asyncio.run(calls())
    for (series, how), response in answers.items():
        best = response.best_result
        _, name, _, _ = ENTRIES[series]
        assert best.anilist_id == numbers[series] and best.filename == name, (series, how)
        at = shots[series][1]
        assert best.anime_from - 1.0 <= at <= best.anime_to + 1.0 and best.similarity > 0.9, (series, how)
        if how == "filtered":
            assert {r.anilist_id for r in response.result} == {numbers[series]}
        if how == "file" and series == "101":
            assert best.anilist.title.romaji == "Show One" and best.anilist.title.native == "ショーワン"
    best = answers["101", "file"].best_result
    status, video = get(best.video_url(size="s", mute=True), 60)
    assert status == 200 and _streams(video, live.tmp) == [("video", 160)]
    status, image = get(best.image_url(size="l"), 60)
    assert status == 200 and _streams(image, live.tmp) == [("video", 640)]
    assert me.id == "127.0.0.1" and me.quota_used >= len(answers)
    # The calls may straddle a minute (or hour, day) boundary: count every bucket since the test began.
    floors = {"minute": {"second": 0}, "hour": {"minute": 0, "second": 0}, "day": {"hour": 0, "minute": 0, "second": 0}}
    for period, history in usage.items():
        since = started.replace(microsecond=0, **floors[period])
        recent = [bucket for bucket in history if bucket.time >= since]
        total = sum(bucket.total for bucket in recent)
        ok = sum(bucket.by_status.get(200, 0) for bucket in recent)
        assert total >= len(answers) and ok >= len(answers), (period, history)


def test_tracemoepy(live, shots, numbers):
    from tracemoepy import TraceMoe
    from tracemoepy.errors import EmptyImage

    client = TraceMoe()
    client.base_url = live.base
    for series, (path, at, url) in shots.items():
        for response in (client.search(url, is_url=True), client.search(str(path), upload_file=True)):
            best = response.result[0]
            assert best.anilist.id == numbers[series] and best.filename == ENTRIES[series][1]
            assert best["from"] - 1.0 <= at <= best.to + 1.0
    response = client.search(str(shots["bbb"][0]), upload_file=True)
    assert response.result[0].anilist.title.romaji == "Big Buck Bunny"
    muted = client.video_preview(response, mute=True)
    assert [kind for kind, _ in _streams(muted, live.tmp)] == ["video"]
    assert [kind for kind, _ in _streams(client.video_preview(response), live.tmp)] == ["video", "audio"]
    assert _streams(client.image_preview(response), live.tmp) == [("video", 320)]
    saved = live.tmp / "saved.mp4"
    assert response.result[0].save(str(saved), mute=True) and [
        k for k, _ in _streams(saved.read_bytes(), live.tmp)
    ] == ["video"]
    me = client.get_me()
    assert me.id == "127.0.0.1" and me.quotaUsed >= 7
    # tracemoepy's search by base64 bytes posts JSON {"image": ...}, which trace.moe does not take either (README)
    with pytest.raises(EmptyImage):
        client.search(shots["101"][0].read_bytes().hex())


def test_picimagesearch(live, shots, numbers):
    from PicImageSearch import TraceMoe

    async def calls():
        engine = TraceMoe(base_url=live.base, base_url_api=live.base, mute=True, size="l", timeout=60)
        answers = {}
        for series, (path, _, url) in shots.items():
            answers[series, "file"] = await engine.search(file=str(path))
            answers[series, "bytes"] = await engine.search(file=path.read_bytes(), anilist_id=numbers[series])
            answers[series, "url"] = await engine.search(url=url)
        return answers, await engine.me()

    answers, me = asyncio.run(calls())
    for (series, how), response in answers.items():
        best = response.raw[0]
        assert best.anilist == numbers[series] and best.filename == ENTRIES[series][1], (series, how)
        assert best.similarity > 90  # PicImageSearch reports percent
    # after each search it asked /anilist for the series: titles from series.json
    assert answers["101", "file"].raw[0].title_romaji == "Show One"
    assert answers["bbb", "url"].raw[0].title_romaji == "Big Buck Bunny"
    assert answers["Other Show", "url"].raw[0].title_native is None
    best = answers["101", "file"].raw[0]
    assert best.video.endswith("&size=l&mute")
    status, video = get(best.video, 60)
    assert status == 200 and _streams(video, live.tmp) == [("video", 640)]
    status, image = get(best.image, 60)
    assert status == 200 and _streams(image, live.tmp) == [("video", 640)]
    assert me.id == "127.0.0.1" and me.quotaUsed >= len(answers)
