"""The trace.moe-compatible API, previews, limits and /status through real Flask requests on a real index."""

from __future__ import annotations

import io
import json
import subprocess
import time

import numpy as np
import pytest
from PIL import Image

from animeback.config import updated
from animeback.sources.synthetic import episode_scenes, grab_frame
from animeback.web import create_app
from animeback.web.previews import PreviewSigner
from tests.conftest import LIBRARY, make_settings


def _frame(library, tmp_path, entry=0, at=None, suffix=".jpg") -> tuple[bytes, float]:
    series, name, seed, duration = LIBRARY[entry]
    if at is None:
        _, start, end = episode_scenes(seed, duration)[1]
        at = round(start + (end - start) * 0.6, 2)
    path = grab_frame(library / series / name, at, tmp_path / f"q{entry}-{at}{suffix}")
    return path.read_bytes(), at


@pytest.fixture
def client(indexed):
    index, _ = indexed
    app = create_app(index.settings, warm=False, index=index)
    return app.test_client()


def test_search_by_multipart_under_any_field_name_and_by_raw_body(client, indexed, tmp_path):
    index, _ = indexed
    image, at = _frame(index.settings.library_path, tmp_path)
    for response in (
        client.post("/search", data={"file": (io.BytesIO(image), "shot.jpg")}),
        client.post("/search", data={"image": (io.BytesIO(image), "shot.jpg")}),
        client.post("/search", data=image, content_type="image/jpeg"),
        client.post("/search", data=image, content_type="application/octet-stream"),
    ):
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        assert body["error"] == "" and body["frameCount"] > 0
        best = body["result"][0]
        assert best["anilist"] == 101 and best["filename"] == LIBRARY[0][1] and best["episode"] == 1
        assert best["from"] <= at + 1.0 and best["to"] >= at - 1.0 and abs(best["at"] - at) <= 1.5
        assert set(best) == {
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
        assert best["video"].startswith("http://localhost/video/") and best["image"].startswith(
            "http://localhost/image/"
        )


def test_a_frame_inside_a_player_window_is_found_and_its_region_returned(client, indexed, tmp_path):
    index, _ = indexed
    image, at = _frame(index.settings.library_path, tmp_path, at=2.39, suffix=".png")  # a detailed scene
    picture = np.asarray(Image.open(io.BytesIO(image)).convert("RGB").resize((640, 360), Image.LANCZOS))
    screen = np.full((800, 1280, 3), (52, 54, 66), np.uint8)  # a desktop
    screen[120:150, 400:1040] = (225, 225, 228)  # the player's title bar
    screen[150:510, 400:1040] = picture
    screen[510:554, 400:1040] = (24, 24, 24)  # its control bar
    buf = io.BytesIO()
    Image.fromarray(screen).save(buf, "PNG")
    plain = client.post("/search", data=buf.getvalue(), content_type="image/png").get_json()
    assert plain["region"] is None  # without cutBorders the whole screenshot is searched, as trace.moe does
    body = client.post("/search?cutBorders", data=buf.getvalue(), content_type="image/png").get_json()
    best, region = body["result"][0], body["region"]
    assert best["filename"] == LIBRARY[0][1] and abs(best["at"] - at) <= 1.5
    assert body["uninformative"] is False and region is not None
    assert abs(region["x"] - 400) <= 6 and abs(region["y"] - 150) <= 6
    assert abs(region["width"] - 640) <= 12 and abs(region["height"] - 360) <= 12


def test_a_screenshot_larger_than_the_decoded_size_reports_its_region_in_its_own_pixels(client, indexed, tmp_path):
    index, _ = indexed
    image, at = _frame(index.settings.library_path, tmp_path, at=2.39, suffix=".png")
    picture = np.asarray(Image.open(io.BytesIO(image)).convert("RGB").resize((1920, 1080), Image.LANCZOS))
    screen = np.full((2400, 3840, 3), (52, 54, 66), np.uint8)  # a 4K desktop, shrunk to 2048 px for searching
    screen[360:450, 1200:3120] = (225, 225, 228)
    screen[450:1530, 1200:3120] = picture
    screen[1530:1662, 1200:3120] = (24, 24, 24)
    buf = io.BytesIO()
    Image.fromarray(screen).save(buf, "JPEG", quality=90)
    body = client.post("/search?cutBorders", data=buf.getvalue(), content_type="image/jpeg").get_json()
    best, region = body["result"][0], body["region"]
    assert best["filename"] == LIBRARY[0][1] and abs(best["at"] - at) <= 1.5
    assert abs(region["x"] - 1200) <= 18 and abs(region["y"] - 450) <= 18
    assert abs(region["width"] - 1920) <= 36 and abs(region["height"] - 1080) <= 36


def test_a_photo_of_the_screen_is_found_with_the_perspective_undone(client, indexed, tmp_path):
    import cv2

    index, _ = indexed
    image, at = _frame(index.settings.library_path, tmp_path, at=2.39, suffix=".png")
    picture = np.asarray(Image.open(io.BytesIO(image)).convert("RGB").resize((640, 360), Image.LANCZOS))
    corners = np.float32([[120, 160], [920, 110], [890, 600], [150, 630]])  # the screen seen from one side
    warp = cv2.getPerspectiveTransform(np.float32([[0, 0], [640, 0], [640, 360], [0, 360]]), corners)
    photo = cv2.warpPerspective(picture, warp, (1024, 736), borderValue=(18, 18, 22))
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, "JPEG", quality=75)
    body = client.post("/search?cutBorders", data=buf.getvalue(), content_type="image/jpeg").get_json()
    best, region = body["result"][0], body["region"]
    assert best["filename"] == LIBRARY[0][1] and abs(best["at"] - at) <= 1.5
    assert region is not None and abs(region["x"] - 120) <= 8 and abs(region["y"] - 110) <= 8
    assert abs(region["width"] - 800) <= 16 and abs(region["height"] - 520) <= 16
    # The picture straightened matches better than the skewed picture cut out of the photo as it is.
    skewed = io.BytesIO()
    Image.fromarray(photo[110:630, 120:920]).save(skewed, "JPEG", quality=75)
    as_is = client.post("/search", data=skewed.getvalue(), content_type="image/jpeg").get_json()["result"][0]
    assert best["similarity"] > as_is["similarity"] + 0.05


def test_a_blank_picture_gets_no_result_and_says_why(client):
    buf = io.BytesIO()
    Image.new("RGB", (320, 180), (3, 3, 3)).save(buf, "PNG")
    body = client.post("/search", data=buf.getvalue(), content_type="image/png").get_json()
    assert body["result"] == [] and body["uninformative"] is True and body["error"] == ""


def test_flags_count_by_presence_and_series_filter(client, indexed, tmp_path):
    index, _ = indexed
    image, _ = _frame(index.settings.library_path, tmp_path)
    body = client.post("/search?anilistInfo&cutBorders=0", data=image, content_type="image/jpeg").get_json()
    anilist = body["result"][0]["anilist"]
    assert anilist["id"] == 101 and anilist["title"]["native"] == "ショーワン"
    assert anilist["synonyms"] == [] and anilist["isAdult"] is False
    other = index.catalogue.series_number("Other Show")
    for by in (other, "Other%20Show"):  # the integer id, or the folder name
        body = client.post(f"/search?anilistID={by}", data=image, content_type="image/jpeg").get_json()
        assert body["result"] and all(r["anilist"] == other and r["series"] == "Other Show" for r in body["result"])
    body = client.post("/search?anilistID=999", data=image, content_type="image/jpeg").get_json()
    assert body["result"] == []


def test_search_errors_are_json_with_trace_moe_statuses(client, tmp_path):
    cases = [
        (client.get("/search"), 405, "Method Not Allowed"),
        (client.post("/search", data={"note": "no file"}, content_type="multipart/form-data"), 405, "no image"),
        (client.post("/search", data=b"not an image", content_type="image/png"), 400, "not an image"),
        (client.post("/search", data=b"", content_type="image/png"), 400, "empty"),
        (client.post("/search", data=b"x" * (26 * 1024 * 1024 + 1), content_type="image/png"), 413, "too large"),
        (client.post("/search", data="{}", content_type="application/json"), 400, "content type"),
        (client.get("/search?url=file:///etc/passwd"), 400, "Invalid image url"),
        (client.put("/search"), 405, "not allowed"),
    ]
    for response, status, message in cases:
        assert response.status_code == status, (status, response.get_json())
        assert response.is_json and message.lower() in response.get_json()["error"].lower()


def test_me_gives_the_usage_history_of_a_period(client, indexed, tmp_path):
    image, _ = _frame(indexed[0].settings.library_path, tmp_path)
    before = {period: client.get(f"/me?period={period}").get_json() for period in ("minute", "hour", "day")}
    client.post("/search", data=image, content_type="image/jpeg")
    client.post("/search", data=b"not an image", content_type="image/jpeg")
    for period, history in before.items():
        after = client.get(f"/me?period={period}").get_json()
        assert isinstance(after, list) and after, period
        last, previous = after[-1], (history[-1] if history and history[-1]["time"] == after[-1]["time"] else {})
        assert last["time"].endswith("Z") and last["total"] == previous.get("total", 0) + 2
        assert last["200"] == previous.get("200", 0) + 1 and last["400"] == previous.get("400", 0) + 1
    response = client.get("/me?period=week")
    assert response.status_code == 400 and "minute, hour or day" in response.get_json()["error"]


def test_me_reports_caller_and_usage(client, indexed, tmp_path):
    before = client.get("/me").get_json()
    assert set(before) == {"id", "priority", "concurrency", "quota", "quotaUsed"}
    assert before["id"] == "127.0.0.1" and isinstance(before["quotaUsed"], int)
    image, _ = _frame(indexed[0].settings.library_path, tmp_path)
    client.post("/search", data=image, content_type="image/jpeg")
    assert client.get("/me").get_json()["quotaUsed"] == before["quotaUsed"] + 1
    client.post("/search", data=b"not an image", content_type="image/jpeg")  # a bad image costs no quota
    assert client.get("/me").get_json()["quotaUsed"] == before["quotaUsed"] + 1


def test_limits_and_me_answer_without_loading_the_model(tmp_path):
    settings = make_settings(tmp_path, tmp_path / "library", api={"rate_limit_per_minute": 2})
    app = create_app(settings, warm=False)  # no index given, none opened in the background
    client = app.test_client()
    me = client.get("/me", environ_base={"REMOTE_ADDR": "192.0.2.9"})
    assert me.status_code == 200 and me.get_json()["quotaUsed"] == 0
    statuses = [client.get("/me", environ_base={"REMOTE_ADDR": "192.0.2.9"}).status_code for _ in range(2)]
    assert statuses == [200, 429]  # the rate limit counts in the store host...
    assert app.extensions["animeback"]._index is None  # ...and the model was never needed for it


def test_previews_are_cached_bounded_and_under_the_rate_limit(indexed, tmp_path):
    index, _ = indexed
    settings = updated(
        index.settings,
        data_dir=str(tmp_path / "data"),
        api={"rate_limit_per_minute": 6},
        server={"preview_cache_mb": 0.05},
    )  # room for a few small clips only
    app = create_app(settings, warm=False, index=index)
    client = app.test_client()
    image, _ = _frame(index.settings.library_path, tmp_path)
    token = client.post("/search", data=image, content_type="image/jpeg").get_json()["result"][0]["video"]
    token = token.rsplit("/", 1)[1].split("?")[0]
    first = client.get(f"/video/{token}?size=s&mute")
    again = client.get(f"/video/{token}?size=s&mute")
    assert (first.headers["x-cache"], again.headers["x-cache"]) == ("miss", "hit") and first.data == again.data
    assert again.headers["x-video-start"] == first.headers["x-video-start"]
    assert client.get(f"/video/{token}?size=s").headers["x-cache"] == "miss"  # with sound: another entry
    cache = settings.data_path / "cache" / "previews"
    assert sum(p.stat().st_size for p in cache.iterdir()) <= 0.05 * 2**20
    statuses = [client.get(path).status_code for path in (f"/image/{token}", "/status", "/match/count")]
    assert statuses[-1] == 429  # the sixth request of this address this minute: previews and /status count too


def _ffprobe_duration(data: bytes, tmp_path) -> tuple[float, str]:
    path = tmp_path / "clip.mp4"
    path.write_bytes(data)
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "format=duration:stream=codec_type,width",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    info = json.loads(out.stdout)
    return float(info["format"]["duration"]), info["streams"]


def test_previews_cut_the_shot_and_are_signed(client, indexed, tmp_path):
    index, _ = indexed
    image, at = _frame(index.settings.library_path, tmp_path)
    best = client.post("/search", data=image, content_type="image/jpeg").get_json()["result"][0]
    path = best["video"].removeprefix("http://localhost")
    assert "?" in path  # preview URLs carry a query string, as trace.moe's do, so that clients append `&mute`
    token = path.rsplit("/", 1)[1].split("?")[0]
    video = client.get(f"{path}&size=s&mute")  # what tracemoepy, PicImageSearch and httpx-based clients send
    assert video.status_code == 200 and video.mimetype == "video/mp4"
    for appended in ("?size=s&mute", ";size=s;mute"):  # a second "?", or another separator: the same clip
        assert client.get(f"{path}{appended}").data == video.data, appended
    assert client.get(f"{path}&size=s").data != video.data  # with sound
    assert video.headers["Cache-Control"] == "max-age=86400"
    duration, streams = _ffprobe_duration(video.data, tmp_path)
    start, end = float(video.headers["x-video-start"]), float(video.headers["x-video-end"])
    assert start <= best["at"] <= end and end - start <= 10.001 and 0 < duration <= 10.1
    assert [s["codec_type"] for s in streams] == ["video"] and streams[0]["width"] == 160
    # the clip stops at the scene cuts around `at` (synthetic scenes are a few seconds long)
    scenes = episode_scenes(LIBRARY[0][2], LIBRARY[0][3])
    scene = next((s, e) for _, s, e in scenes if s <= at < e)
    assert scene[0] - 0.5 <= start and end <= scene[1] + 0.5

    still = client.get(f"/image/{token}", headers={"Accept": "image/webp,*/*"})
    assert still.mimetype == "image/webp" and Image.open(io.BytesIO(still.data)).width == 320
    still = client.get(f"/image/{token}?size=l")
    assert still.mimetype == "image/jpeg" and Image.open(io.BytesIO(still.data)).width == 640

    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert client.get(f"/video/{tampered}").status_code == 403
    other = PreviewSigner(b"someone else's secret", 3600).issue(1, 1.0)
    assert client.get(f"/image/{other}").status_code == 403
    signer = client.application.extensions["animeback"].signer
    expired = signer.issue(1, 1.0, now=time.time() - 2 * signer.ttl_s)
    response = client.get(f"/video/{expired}")
    assert response.status_code == 410 and "expired" in response.get_json()["error"]
    assert client.get(f"/video/{token}?size=xl").status_code == 400
    assert client.get(f"{path}&size=m&size=xl").status_code == 400  # the last of a name wins


def test_video_previews_answer_range_requests(client, indexed, tmp_path):
    """Safari plays, and players seek, only with HTTP Range: 206 with Content-Range, and Accept-Ranges."""
    index, _ = indexed
    image, _ = _frame(index.settings.library_path, tmp_path)
    path = client.post("/search", data=image, content_type="image/jpeg").get_json()["result"][0]["video"]
    path = path.removeprefix("http://localhost") + "&size=s&mute"
    whole = client.get(path)
    assert whole.status_code == 200 and whole.headers["Accept-Ranges"] == "bytes" and whole.headers["ETag"]
    size = len(whole.data)
    first = client.get(path, headers={"Range": "bytes=0-1"})  # what Safari asks first
    assert first.status_code == 206 and first.data == whole.data[:2]
    assert first.headers["Content-Range"] == f"bytes 0-1/{size}" and first.headers["Content-Length"] == "2"
    tail = client.get(path, headers={"Range": "bytes=100-"})
    assert tail.status_code == 206 and tail.data == whole.data[100:]
    assert client.get(path, headers={"Range": f"bytes={size + 10}-"}).status_code == 416
    same = client.get(path, headers={"If-None-Match": whole.headers["ETag"]})
    assert same.status_code == 304 and not same.data
    assert client.get("/video/..%2f..%2fetc%2fpasswd").status_code in (403, 404)


def test_status_describes_the_index(client):
    body = client.get("/status").get_json()
    assert body["series"] == 2 and body["episodes"] == len(LIBRARY) and body["frames"] > 0
    assert body["hours"] == pytest.approx(sum(e[3] for e in LIBRARY) / 3600, abs=0.002)
    assert body["index_bytes"] > 0 and body["model"].startswith("mobilenet_v2_imagenet")
    assert body["milvus"].startswith("Milvus Lite")


def test_api_keys_quota_concurrency_and_rate_limit(indexed, tmp_path):
    index, _ = indexed
    settings = updated(
        index.settings,
        api={
            "keys": {"k-alice": {"id": "alice", "priority": 2, "concurrency": 1, "quota": 1}},
            "rate_limit_per_minute": 3,
        },
    )
    client = create_app(settings, warm=False, index=index).test_client()
    image, _ = _frame(index.settings.library_path, tmp_path)
    alice = {"x-trace-key": "k-alice"}
    me = client.get("/me", headers=alice).get_json()
    assert me["id"] == "alice" and me["priority"] == 2 and me["concurrency"] == 1 and me["quota"] == 1
    used = me["quotaUsed"]
    if used == 0:
        assert client.post("/search", data=image, content_type="image/jpeg", headers=alice).status_code == 200
    response = client.post("/search", data=image, content_type="image/jpeg", headers=alice)
    assert response.status_code == 402 and response.get_json()["error"] == "Search quota depleted"
    response = client.get("/me", headers={"x-trace-key": "wrong"})
    assert response.status_code == 403 and response.get_json()["error"] == "Invalid API key"
    statuses = [client.get("/me", environ_base={"REMOTE_ADDR": "192.0.2.7"}).status_code for _ in range(5)]
    assert statuses[:3] == [200, 200, 200] and 429 in statuses[3:]


def test_busy_queue_and_concurrency_limits_answer_503_and_402(indexed, tmp_path):
    index, _ = indexed
    settings = updated(
        index.settings, api={"keys": {"k-bob": {"id": "bob", "concurrency": 1}}}, server={"max_search_queue": 1}
    )
    app = create_app(settings, warm=False, index=index)
    services = app.extensions["animeback"]
    client = app.test_client()
    image, _ = _frame(index.settings.library_path, tmp_path)
    services._queue.acquire()  # a search of this worker in progress
    response = client.post("/search", data=image, content_type="image/jpeg")
    assert response.status_code == 503 and "queue is full" in response.get_json()["error"]
    services._queue.release()
    services.counters.add("running/bob", 1, 600.0)  # bob's search running in another worker
    response = client.post("/search", data=image, content_type="image/jpeg", headers={"x-trace-key": "k-bob"})
    assert response.status_code == 402 and response.get_json()["error"] == "Concurrency limit exceeded"
    services.counters.add("running/bob", -1, 600.0)
    response = client.post("/search", data=image, content_type="image/jpeg", headers={"x-trace-key": "k-bob"})
    assert response.status_code == 200


def test_behind_a_trusted_proxy_limits_key_on_the_real_client(indexed, tmp_path):
    index, _ = indexed
    forwarded = {"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "anime.example"}
    direct = create_app(index.settings, warm=False, index=index).test_client()
    assert direct.get("/me", headers=forwarded).get_json()["id"] == "127.0.0.1"  # not trusted: the header is ignored
    settings = updated(
        index.settings, data_dir=str(tmp_path / "data"), server={"trusted_proxies": 1}, api={"rate_limit_per_minute": 2}
    )
    client = create_app(settings, warm=False, index=index).test_client()
    assert client.get("/me", headers=forwarded).get_json()["id"] == "198.51.100.7"
    image, _ = _frame(index.settings.library_path, tmp_path)
    body = client.post("/search", data=image, content_type="image/jpeg", headers=forwarded).get_json()
    assert body["result"][0]["video"].startswith("https://anime.example/video/")
    assert client.get("/me", headers=forwarded).status_code == 429  # the third request of 198.51.100.7
    other = {**forwarded, "X-Forwarded-For": "198.51.100.8"}
    assert client.get("/me", headers=other).get_json()["id"] == "198.51.100.8"  # another person behind the proxy
    # a client that adds its own X-Forwarded-For gets the address the proxy saw, the last one
    spoofed = {**forwarded, "X-Forwarded-For": "203.0.113.1, 198.51.100.9"}
    assert client.get("/me", headers=spoofed).get_json()["id"] == "198.51.100.9"


def test_series_lists_the_library_with_ids_titles_and_episode_status(client, indexed):
    index, _ = indexed
    body = client.get("/series").get_json()
    by_folder = {s["series"]: s for s in body["series"]}
    assert set(by_folder) == {"101", "Other Show"}
    assert [s["title"] for s in body["series"]] == ["Other Show", "Show One"]  # by title
    one = by_folder["101"]
    assert one["anilist"] == 101 and one["link"] == "https://anilist.co/anime/101" and one["cover"] is None
    assert [(e["episode"], e["status"]) for e in one["episodes"]] == [(1, "indexed"), (2, "indexed")]
    other = by_folder["Other Show"]
    assert other["anilist"] == index.catalogue.series_number("Other Show") and other["link"] is None
    assert client.get("/favicon.ico").mimetype == "image/x-icon"


def test_a_confident_match_is_answered_from_the_picture_alone_and_a_flipped_one_searches_the_mirror(indexed, tmp_path):
    import dataclasses

    from animeback.query.search import Searcher

    index, _ = indexed
    image, at = _frame(index.settings.library_path, tmp_path, at=2.39, suffix=".png")
    rgb = np.asarray(Image.open(io.BytesIO(image)).convert("RGB"))
    searcher = Searcher(index)

    def answer(outcome):
        best = outcome.matches[0]
        return best.filename == LIBRARY[0][1] and abs(best.at - at) <= 1.5, best.similarity

    plain = searcher.search(rgb, cut_borders=True)
    right, similarity = answer(plain)
    # one CNN image, no window or screen detection: the picture as sent is already a confident match
    assert right and similarity >= searcher.settings.confident and plain.variants == ["full"]
    mirrored = np.ascontiguousarray(rgb[:, ::-1])
    default = searcher.settings
    searcher.settings = dataclasses.replace(default, mirror=False)
    as_sent = answer(searcher.search(mirrored, cut_borders=True))
    # Below `confident`, the mirror image (and any window or screen) is searched too.
    searcher.settings = dataclasses.replace(default, confident=min(1.0, as_sent[1] + 0.01))
    flipped = searcher.search(mirrored, cut_borders=True)
    assert flipped.variants[:2] == ["full", "flipped"] and answer(flipped)[0]
    searcher.settings = dataclasses.replace(default, confident=1.0)  # every region, every time
    every = searcher.search(rgb, cut_borders=True)
    assert answer(every)[0] and answer(every)[1] >= similarity and every.variants[:2] == ["full", "flipped"]
    # A letterboxed screenshot: the picture inside its bars is the one CNN image, unless it is no confident match.
    boxed = np.pad(rgb, ((60, 60), (0, 0), (0, 0)))
    searcher.settings = default
    cut = searcher.search(boxed, cut_borders=True)
    assert answer(cut)[0] and cut.variants == ["borders_cut"]
    searcher.settings = dataclasses.replace(default, confident=1.0)
    assert searcher.search(boxed, cut_borders=True).variants[:3] == ["borders_cut", "full", "flipped"]
