"""A local fake of bilibili's HTTP side, for the downloader tests (bilibili cannot be reached from here).

Only the HTTP layer is fake: bilibili-api-python runs unchanged, with an httpx transport that sends its
requests to this server on 127.0.0.1 instead of api.bilibili.com; our downloader fetches the media URLs the
fake hands out (real small DASH streams made by ffmpeg) with real HTTP range requests.
The answers follow the shapes of bilibili's web API: /pgc/view/web/simple/season (season info with its
episodes), /pgc/review/user (media id -> season), /pgc/player/web/v2/playurl (DASH video and audio lists).
"""

from __future__ import annotations

import http.server
import json
import subprocess
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
from bilibili_api.clients.HTTPXClient import HTTPXClient

CLIENT_NAME = "animeback-test-fake-bilibili"


def make_dash_streams(folder: Path, seed: int, duration: float = 3.0) -> tuple[Path, Path]:
    """A fragmented-MP4 H.264 video stream and an AAC audio stream, as bilibili's .m4s files are."""
    video, audio = folder / f"v{seed}.m4s", folder / f"a{seed}.m4s"
    frag = ["-movflags", "frag_keyframe+empty_moov+default_base_moof", "-f", "mp4"]
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"mandelbrot=size=320x180:rate=24:start_scale={0.5 + seed / 10}",
            "-t",
            str(duration),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            *frag,
            str(video),
        ],
        check=True,
    )
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency={300 + 50 * seed}",
            "-t",
            str(duration),
            "-c:a",
            "aac",
            "-b:a",
            "64k",
            *frag,
            str(audio),
        ],
        check=True,
    )
    return video, audio


class FakeBilibili:
    """State of the fake: seasons, per-episode streams, injected faults, and what was asked."""

    def __init__(self, media_folder: Path):
        self.media_folder = media_folder
        self.seasons: dict[int, dict] = {}  # season id -> season "result"
        self.media_to_season: dict[int, int] = {}
        self.playurls: dict[int, dict] = {}  # episode id -> {"qualities": [...], "video": name, "audio": name}
        self.api_codes: dict[str, list[tuple[int, str]]] = {}  # "season:<id>" / "play:<ep>" -> codes to answer, in turn
        self.member_only: set[int] = set()  # episode ids that need a SESSDATA cookie
        self.faults: dict[str, list[str]] = {}  # media name -> actions for successive requests: "drop:N", "status:N"
        self.media_base = ""  # where play URLs point (default: this server); a closed port plays "network down"
        self.requests: list[str] = []
        self.cookies_seen: list[str] = []
        self.server = None
        self.port = 0

    # -- content ------------------------------------------------------------------------------------------
    def add_season(
        self, season_id: int, media_id: int, title: str, episodes: list[tuple[int, str, float]], qualities=(80, 64, 32)
    ) -> None:
        """A season whose episodes are (episode id, number text, seconds); streams made by make_dash_streams."""
        self.media_to_season[media_id] = season_id
        self.seasons[season_id] = {
            "season_id": season_id,
            "media_id": media_id,
            "title": title,
            "season_title": title,
            "jp_title": f"{title} (JP)",
            "alias": f"{title} alias,{title} another",
            "evaluate": f"About {title}.",
            "cover": f"http://127.0.0.1/cover/{season_id}.jpg",
            "link": f"https://www.bilibili.com/bangumi/media/md{media_id}/",
            "up_info": {"mid": 1, "uname": "uploader"},
            "episodes": [
                {
                    "id": ep,
                    "aid": 1000 + ep,
                    "bvid": "BV1Am411y7iK",
                    "cid": 2000 + ep,
                    "title": number,
                    "long_title": f"Episode {number} of {title}",
                    "duration": int(seconds * 1000),
                    "badge": "",
                    "status": 2,
                }
                for ep, number, seconds in episodes
            ],
        }
        for ep, _number, _seconds in episodes:
            self.playurls[ep] = {"qualities": list(qualities), "video": f"v{ep}.m4s", "audio": f"a{ep}.m4s"}

    def _playurl(self, episode_id: int) -> dict:
        spec = self.playurls[episode_id]
        base = (self.media_base or f"http://127.0.0.1:{self.port}") + "/upgcxcode"
        videos = [
            {
                "id": q,
                "baseUrl": f"{base}/{spec['video']}?q={q}",
                "base_url": f"{base}/{spec['video']}?q={q}",
                "backupUrl": [f"{base}/backup/{spec['video']}?q={q}"],
                "backup_url": [f"{base}/backup/{spec['video']}?q={q}"],
                "bandwidth": 1000 * q,
                "mimeType": "video/mp4",
                "codecs": "avc1.64001F",
                "width": 320,
                "height": 180,
                "codecid": 7,
            }
            for q in spec["qualities"]
        ]
        audio = [
            {
                "id": 30280,
                "baseUrl": f"{base}/{spec['audio']}",
                "base_url": f"{base}/{spec['audio']}",
                "backupUrl": [],
                "backup_url": [],
                "bandwidth": 64000,
                "mimeType": "audio/mp4",
                "codecs": "mp4a.40.2",
                "codecid": 0,
            }
        ]
        return {
            "video_info": {
                "quality": max(spec["qualities"]),
                "format": "dash",
                "accept_quality": spec["qualities"],
                "accept_description": [str(q) for q in spec["qualities"]],
                "dash": {"duration": 3, "video": videos, "audio": audio},
            },
            "play_view_business_info": {"season_info": {"season_id": 0}, "episode_info": {"bvid": "BV1Am411y7iK"}},
        }

    # -- HTTP ---------------------------------------------------------------------------------------------
    def start(self) -> FakeBilibili:
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                fake.requests.append(f"POST {self.path}")
                self._json({"code": 0, "message": "0", "data": {}})

            def do_GET(self):
                fake.requests.append(f"GET {self.path}")
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path.startswith("/upgcxcode/"):
                    return self._media(url.path.rsplit("/", 1)[1], url.path.startswith("/upgcxcode/backup/"))
                if url.path == "/x/frontend/finger/spi":
                    return self._json({"code": 0, "message": "ok", "data": {"b_3": "FAKE-B3", "b_4": "FAKE-B4"}})
                if url.path == "/pgc/review/user":
                    season = fake.media_to_season.get(int(query.get("media_id", 0)))
                    if season is None:
                        return self._json({"code": -404, "message": "啥都木有"})
                    return self._json(
                        {
                            "code": 0,
                            "message": "success",
                            "result": {
                                "media": {
                                    "media_id": int(query["media_id"]),
                                    "season_id": season,
                                    "title": fake.seasons[season]["title"],
                                }
                            },
                        }
                    )
                if url.path == "/pgc/view/web/simple/season":
                    season = fake.seasons.get(int(query.get("season_id", 0)))
                    if season is None and "ep_id" in query:
                        season = next(
                            (
                                s
                                for s in fake.seasons.values()
                                if any(e["id"] == int(query["ep_id"]) for e in s["episodes"])
                            ),
                            None,
                        )
                    if season is None:
                        return self._json({"code": -404, "message": "啥都木有"})
                    if self._injected(f"season:{season['season_id']}"):
                        return None
                    return self._json({"code": 0, "message": "success", "result": season})
                if url.path == "/pgc/player/web/v2/playurl":
                    episode = int(query.get("ep_id", 0))
                    fake.cookies_seen.append(self.headers.get("Cookie", ""))
                    if episode not in fake.playurls:
                        return self._json({"code": -404, "message": "啥都木有"})
                    if self._injected(f"play:{episode}"):
                        return None
                    if episode in fake.member_only and "SESSDATA=good" not in self.headers.get("Cookie", ""):
                        code = -101 if "SESSDATA=expired" in self.headers.get("Cookie", "") else -10403
                        return self._json({"code": code, "message": "大会员专享限制"})
                    return self._json({"code": 0, "message": "success", "result": fake._playurl(episode)})
                self.send_error(404)

            def _injected(self, key: str) -> bool:
                codes = fake.api_codes.get(key)
                if not codes:
                    return False
                code, message = codes.pop(0)
                if code in (412, 429):  # bilibili's anti-crawler answers are HTTP statuses
                    self.send_response(code)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self._json({"code": code, "message": message})
                return True

            def _json(self, body: dict) -> None:
                data = json.dumps(body, ensure_ascii=False).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _media(self, name: str, backup: bool) -> None:
                path = fake.media_folder / name
                actions = fake.faults.get(("backup/" if backup else "") + name)
                action = actions.pop(0) if actions else ""
                if action.startswith("status:") or not path.exists():
                    self.send_response(int(action.split(":")[1]) if action else 404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = path.read_bytes()
                start = 0
                if self.headers.get("Range", "").startswith("bytes="):
                    start = int(self.headers["Range"][6:].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Type", "video/mp4")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if action.startswith("drop:"):  # the connection dies mid-file
                    self.wfile.write(body[: int(action.split(":")[1])])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # a client that hangs up mid-answer (as downloads that are cut short do) is not news

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()


class _ToFake(httpx.AsyncBaseTransport):
    """Sends every request to the fake server, keeping path, query, headers and body."""

    port = 0

    def __init__(self):
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(scheme="http", host="127.0.0.1", port=self.port)
        return await self.inner.handle_async_request(request)


class FakeRoutedClient(HTTPXClient):
    """bilibili-api's own httpx client, with its connections going to the fake."""

    def __init__(
        self,
        proxy: str = "",
        timeout: float = 0.0,
        verify_ssl: bool = True,
        trust_env: bool = True,
        http2: bool = False,
        session=None,
    ):
        super().__init__(
            proxy,
            timeout,
            verify_ssl,
            trust_env,
            http2,
            session=httpx.AsyncClient(transport=_ToFake(), timeout=timeout or 30),
        )


def route_bilibili_api_to(port: int) -> None:
    """Make bilibili-api send its requests to the fake on this port."""
    from bilibili_api import register_client

    _ToFake.port = port
    register_client(CLIENT_NAME, FakeRoutedClient)
