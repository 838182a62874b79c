"""`download-bilibili` against a local fake of bilibili's HTTP side (tests/fake_bilibili.py): queue and
selection, metadata in series.json and the catalogue, resumed downloads, real ffmpeg muxing, atomic placement,
quality fallback, and every error the queue must survive."""

from __future__ import annotations

import json
import logging
import subprocess

import pytest

from animeback.cli import main as cli_main
from animeback.config import updated
from animeback.errors import ConfigError, SourceError
from animeback.ingest.library import scan_library
from animeback.sources.bilibili import BilibiliSource, parse_reference
from animeback.sources.download import download_queue, parse_queue
from animeback.stores.host import connect
from tests.conftest import make_settings
from tests.fake_bilibili import FakeBilibili, make_dash_streams, route_bilibili_api_to


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """DASH streams for episode ids 11, 12, 13 and 21."""
    folder = tmp_path_factory.mktemp("bili-media")
    for ep in (11, 12, 13, 21):
        video, audio = make_dash_streams(folder, ep % 10)
        video.rename(folder / f"v{ep}.m4s")
        audio.rename(folder / f"a{ep}.m4s")
    return folder


@pytest.fixture
def fake(media):
    fake = FakeBilibili(media).start()
    fake.add_season(4001, 28000001, "Fake Show", [(11, "1", 3.0), (12, "2", 3.0), (13, "3", 3.0)])
    fake.add_season(4002, 28000002, "Second Show", [(21, "1", 3.0)], qualities=(64, 32))
    route_bilibili_api_to(fake.port)
    yield fake
    fake.stop()


def _settings(tmp_path, **bilibili):
    return make_settings(tmp_path, tmp_path / "library", bilibili={"retries": 2, "parallel": 2, **bilibili})


def _probe(path) -> list[str]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_type", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return sorted(s["codec_type"] for s in json.loads(out.stdout)["streams"])


def test_references_in_every_accepted_form():
    assert parse_reference("ss4001") == ("ss", 4001)
    assert parse_reference("md28000001") == ("md", 28000001)
    assert parse_reference("https://www.bilibili.com/bangumi/play/ss4001?spm=1") == ("ss", 4001)
    assert parse_reference("https://www.bilibili.com/bangumi/play/ep12") == ("ep", 12)
    assert parse_reference("https://www.bilibili.com/bangumi/media/md28000001/") == ("md", 28000001)
    with pytest.raises(SourceError, match="not a bilibili season"):
        parse_reference("https://example.org/video/123")


def test_queue_entries_are_checked(tmp_path):
    settings = _settings(
        tmp_path, queue=["ss1", {"season": "ss2", "episodes": "1-3,5"}, {"season": "md3", "episodes": [1, 2]}]
    )
    entries = parse_queue(settings.bilibili.queue)
    assert [e.reference for e in entries] == ["ss1", "ss2", "md3"]
    for bad in ([42], [{"season": "ss1", "episodes": "one"}], [{"season": "ss1", "extra": 1}]):
        with pytest.raises(ConfigError, match="bilibili.queue"):
            parse_queue(bad)


def test_download_selected_episodes_with_metadata_then_skip_on_rerun(tmp_path, fake, caplog):
    settings = _settings(
        tmp_path, queue=[{"season": "md28000001", "episodes": "1,3"}, "https://www.bilibili.com/bangumi/play/ep21"]
    )
    with caplog.at_level(logging.INFO):
        report = download_queue(settings, progress=False)
    assert report.seasons == 2 and report.downloaded == 3 and report.failed == 0, report.errors
    show = settings.library_path / "4001"
    assert sorted(p.name for p in show.iterdir()) == ["Fake Show - 01.mp4", "Fake Show - 03.mp4", "series.json"]
    assert _probe(show / "Fake Show - 01.mp4") == ["audio", "video"]
    metadata = json.loads((show / "series.json").read_text())
    assert metadata["title"] == "Fake Show" and metadata["intro"] == "About Fake Show."
    assert metadata["titles"]["native"] == "Fake Show" and metadata["synonyms"] == [
        "Fake Show alias",
        "Fake Show another",
    ]
    assert [e["number"] for e in metadata["episodes"]] == [1, 2, 3] and metadata["episodes"][0]["duration"] == 3.0
    store = connect(settings)
    assert store.catalogue.get_series("4001")["cover"].endswith("/4001.jpg")
    store.close()
    # quality fallback: the second season offers 720P at best, and the log says so
    assert "1080P is not available; took 720P" in caplog.text
    # `process` reads the layout: series folder, episode numbers from the names
    files = {f.relpath: f for f in scan_library(settings.library_path).files}
    assert "4001/Fake Show - 03.mp4" in files and files["4001/Fake Show - 03.mp4"].series_id == "4001"
    # nothing half-written anywhere, no parts left behind
    assert not [p for p in settings.library_path.rglob("*") if p.name.startswith(".")]
    assert not list((settings.data_path / "downloads").rglob("*.part"))

    fake.requests.clear()
    report = download_queue(settings, progress=False)
    assert report.downloaded == 0 and report.skipped == 3
    assert not [r for r in fake.requests if "/upgcxcode/" in r]


def test_interrupted_download_resumes_with_a_range_request(tmp_path, fake, media):
    size = (media / "v12.m4s").stat().st_size
    fake.faults["v12.m4s"] = [f"drop:{size // 3}"]  # the first transfer dies a third of the way in
    settings = _settings(tmp_path, queue=[{"season": "ss4001", "episodes": [2]}])
    report = download_queue(settings, progress=False)
    assert report.downloaded == 1, report.errors
    media_requests = [r for r in fake.requests if "v12.m4s" in r]
    assert len(media_requests) >= 2
    target = settings.library_path / "4001" / "Fake Show - 02.mp4"
    assert _probe(target) == ["audio", "video"]
    assert (
        subprocess.run(
            ["ffmpeg", "-v", "error", "-i", str(target), "-f", "null", "-"], capture_output=True, text=True
        ).stderr
        == ""
    )  # decodes cleanly end to end


@pytest.mark.slow
def test_rate_limits_and_dead_mirrors_are_retried(tmp_path, fake):
    fake.api_codes["season:4001"] = [(412, ""), (-412, "请求被拦截")]
    fake.faults["v11.m4s"] = ["status:429"]
    fake.faults["backup/v11.m4s"] = ["status:503"]
    settings = _settings(tmp_path, queue=[{"season": "ss4001", "episodes": "1"}], retries=3)
    report = download_queue(settings, progress=False)
    assert report.downloaded == 1 and report.failed == 0, report.errors


def test_errors_are_reported_and_the_queue_goes_on(tmp_path, fake, capsys, caplog):
    fake.member_only.add(13)
    fake.faults["v12.m4s"] = ["status:404", "status:404"]
    fake.faults["backup/v12.m4s"] = ["status:404", "status:404"]
    fake.api_codes["season:4002"] = [(-10403, "抱歉您所在地区不可观看！")]
    settings = _settings(tmp_path, queue=["ss999", "ss4002", "ss4001"], sessdata="")
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "library_dir": str(settings.library_path),
                "data_dir": str(settings.data_path),
                "bilibili": {"queue": settings.bilibili.queue, "retries": 1},
                "stores": {"host_idle_s": 3},
            }
        )
    )
    with caplog.at_level(logging.ERROR):
        code = cli_main(["--config", str(config), "-q", "download-bilibili"])
    out = capsys.readouterr()
    said = out.err + caplog.text  # each failure is logged once as it happens, and not printed again
    assert code == 1 and "Traceback" not in out.err
    assert said.count("season ss999: not found on bilibili") == 1
    assert said.count("season ss4002: not available: region-locked") == 1
    assert (
        said.count("episode 3 of Fake Show: not available: region-locked, or member-only (set bilibili.sessdata)") == 1
    )
    assert said.count("episode 2 of Fake Show: HTTP 404") == 1
    assert (settings.library_path / "4001" / "Fake Show - 01.mp4").exists()  # the rest went on
    assert "downloaded 1 episode(s)" in out.out and "failed 4" in out.out


def test_network_down_is_retried_then_reported(tmp_path, fake):
    import socket

    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        fake.media_base = f"http://127.0.0.1:{closed.getsockname()[1]}"
    settings = _settings(tmp_path, queue=[{"season": "ss4001", "episodes": [1]}], retries=1)
    report = download_queue(settings, progress=False)
    assert report.failed == 1 and "episode 1 of Fake Show: network error" in report.errors[0]
    assert not (settings.library_path / "4001" / "Fake Show - 01.mp4").exists()


def test_sessdata_unlocks_member_episodes_and_never_leaks(tmp_path, fake, caplog):
    fake.member_only.add(13)
    settings = _settings(tmp_path, queue=[{"season": "ss4001", "episodes": [3]}], sessdata="expired")
    report = download_queue(settings, progress=False)
    assert report.failed == 1 and "SESSDATA cookie is not logged in or has expired" in report.errors[0]
    settings = updated(settings, bilibili={"sessdata": "good"})
    with caplog.at_level(logging.DEBUG):
        report = download_queue(settings, progress=False)
    assert report.downloaded == 1 and any("SESSDATA=good" in c for c in fake.cookies_seen)
    assert "SESSDATA=good" not in caplog.text
    assert "good" not in (settings.library_path / "4001" / "series.json").read_text()
    store = connect(settings)
    assert "good" not in json.dumps(store.catalogue.get_series("4001"))
    store.close()


@pytest.mark.slow
def test_process_after_each_episode_makes_it_searchable(tmp_path, fake, embedder):
    settings = _settings(tmp_path, queue=[{"season": "ss4002"}])
    report = download_queue(settings, progress=False, process=True)
    assert report.downloaded == 1 and report.indexed == 1
    from animeback.index import Index

    with Index(settings, embedder) as index:
        records = [r for r in index.catalogue.episodes()]
        assert [(r.series_id, r.episode, r.status) for r in records] == [("4002", 1, "indexed")]


def test_source_maps_unknown_answers_to_clear_errors(fake):
    source = BilibiliSource()
    with pytest.raises(SourceError, match="not found on bilibili"):
        source.season("md123")
