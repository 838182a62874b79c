"""bilibili seasons through bilibili-api-python (its async API): season metadata, episode list, DASH play URLs.

All bilibili-specific knowledge lives here: how references look, which fields hold what, quality codes, and
what bilibili's error codes mean. The SESSDATA cookie goes only into bilibili-api's Credential.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from ..errors import SourceError
from . import EpisodeInfo, EpisodeStreams, MediaStream, SeasonInfo

log = logging.getLogger(__name__)

QUALITIES = {
    127: "8K",
    126: "Dolby Vision",
    125: "HDR",
    120: "4K",
    116: "1080P60",
    112: "1080P+",
    80: "1080P",
    74: "720P60",
    64: "720P",
    32: "480P",
    16: "360P",
}
AVC = 7  # codecid of H.264 streams: preferred, every ffmpeg and browser plays them
DOWNLOAD_HEADERS = {
    "Referer": "https://www.bilibili.com/",
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
}
_REFERENCE = re.compile(r"(?:^|/|\b)(ss|md|ep)(\d+)(?:\b|/|$)", re.IGNORECASE)

# bilibili's answer codes -> (what to tell the user, whether trying again later can help)
_CODES = {
    -404: ("not found on bilibili", False),
    404: ("not found on bilibili", False),
    -400: ("bilibili refused the request as malformed", False),
    -10403: ("not available: region-locked, or member-only (set bilibili.sessdata)", False),
    6002003: ("not available in this region", False),
    -101: ("the SESSDATA cookie is not logged in or has expired (renew bilibili.sessdata)", False),
    -412: ("rate-limited by bilibili", True),
    412: ("rate-limited by bilibili", True),
    429: ("rate-limited by bilibili", True),
    -509: ("rate-limited by bilibili", True),
}


def parse_reference(reference: str) -> tuple[str, int]:
    """("ss"|"md"|"ep", id) from `ss123`, `md123`, `ep123` or a bilibili season, media or episode URL."""
    match = _REFERENCE.search(reference.strip())
    if not match:
        raise SourceError(
            f"{reference!r} is not a bilibili season: use ss12345, md12345, or a "
            "bilibili.com/bangumi/play/ss... or .../ep... or .../media/md... URL"
        )
    return match.group(1).lower(), int(match.group(2))


def _explain(exc: Exception, what: str) -> SourceError:
    """A SourceError for whatever bilibili-api raised."""
    from bilibili_api.exceptions import NetworkException, ResponseCodeException

    if isinstance(exc, ResponseCodeException):
        text, retryable = _CODES.get(exc.code, (f"bilibili answered code {exc.code}: {exc.msg}", False))
        return SourceError(f"{what}: {text}", retryable)
    if isinstance(exc, NetworkException):
        text, retryable = _CODES.get(exc.status, (f"HTTP {exc.status} from bilibili", exc.status >= 500))
        return SourceError(f"{what}: {text}", retryable)
    if isinstance(exc, (OSError, asyncio.TimeoutError)) or type(exc).__module__.startswith(("httpx", "httpcore")):
        return SourceError(f"{what}: network error ({type(exc).__name__}: {exc or 'no detail'})", True)
    return SourceError(f"{what}: unexpected answer from bilibili ({type(exc).__name__}: {exc})")


def _number(text: str) -> int | float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return int(value) if value.is_integer() else value


class BilibiliSource:
    """Seasons of bilibili's bangumi section."""

    name = "bilibili"

    def __init__(self, sessdata: str = ""):
        self._sessdata = sessdata

    def _credential(self):
        from bilibili_api import Credential

        return Credential(sessdata=self._sessdata or None)

    def season(self, reference: str) -> SeasonInfo:
        kind, number = parse_reference(reference)
        try:
            raw = asyncio.run(self._season_raw(kind, number))
        except Exception as exc:
            raise _explain(exc, f"season {reference}") from None
        return self._season_info(raw)

    async def _season_raw(self, kind: str, number: int) -> dict:
        from bilibili_api.bangumi import Bangumi

        ids = {"ss": "ssid", "md": "media_id", "ep": "epid"}
        which: dict[str, Any] = {ids[kind]: number}
        bangumi = Bangumi(**which, credential=self._credential())
        # get_raw() alone fails on a fresh Bangumi in bilibili-api 17.4 (it reads a field only a fetch sets);
        # get_up_info() performs that one fetch of the season (pgc/view/web/simple/season) first.
        await bangumi.get_up_info()
        raw, _oversea = await bangumi.get_raw()
        return raw

    @staticmethod
    def _season_info(raw: dict) -> SeasonInfo:
        episodes = []
        for position, ep in enumerate(raw.get("episodes") or [], 1):
            number = _number(ep.get("title"))
            episodes.append(
                EpisodeInfo(
                    int(ep["id"]),
                    number if number is not None else position,
                    str(ep.get("long_title") or ep.get("title") or ""),
                    float(ep.get("duration") or 0) / 1000.0,
                )
            )
        title = str(raw.get("season_title") or raw.get("title") or raw["season_id"])
        titles = {"native": raw.get("title") or title}
        alias = [a.strip() for a in str(raw.get("alias") or "").replace("，", ",").split(",") if a.strip()]
        if raw.get("jp_title"):
            titles["native_original"] = raw["jp_title"]
        extra = {
            "source": "bilibili",
            "season_id": raw["season_id"],
            "media_id": raw.get("media_id"),
            "synonyms": alias,
            "link": raw.get("link") or f"https://www.bilibili.com/bangumi/play/ss{raw['season_id']}",
        }
        return SeasonInfo(
            str(raw["season_id"]),
            title,
            titles,
            str(raw.get("cover") or ""),
            str(raw.get("evaluate") or ""),
            episodes,
            extra,
        )

    def streams(self, season: SeasonInfo, episode: EpisodeInfo, quality: int) -> EpisodeStreams:
        what = f"episode {episode.number} of {season.title}"
        try:
            play = asyncio.run(self._playurl(episode.id))
        except Exception as exc:
            raise _explain(exc, what) from None
        return self._choose(play, quality, what)

    async def _playurl(self, episode_id: int) -> dict:
        from bilibili_api.bangumi import Episode

        return await Episode(epid=episode_id, credential=self._credential()).get_download_url()

    @staticmethod
    def _choose(play: dict, quality: int, what: str) -> EpisodeStreams:
        info = play.get("video_info") or play  # v2 playurl nests the classic answer under video_info
        dash = info.get("dash")
        if not dash or not dash.get("video"):
            raise SourceError(f"{what}: bilibili offered no DASH streams (member-only or region-locked?)")
        videos = [v for v in dash["video"] if int(v["id"]) <= quality]
        if not videos:
            raise SourceError(f"{what}: no stream at or below quality {quality}")
        best_id = max(int(v["id"]) for v in videos)
        candidates = [v for v in videos if int(v["id"]) == best_id]
        video = next((v for v in candidates if v.get("codecid") == AVC), candidates[0])
        audios = sorted(dash.get("audio") or [], key=lambda a: -int(a.get("bandwidth") or a.get("id") or 0))
        note = ""
        if best_id < quality:
            note = (
                f"{QUALITIES.get(quality, quality)} is not available; took {QUALITIES.get(best_id, best_id)}, "
                "the best offered below it"
            )
        return EpisodeStreams(
            _stream(video, "video"),
            _stream(audios[0], "audio") if audios else None,
            QUALITIES.get(best_id, str(best_id)),
            note,
            dict(DOWNLOAD_HEADERS),
        )


def _stream(item: dict, kind: str) -> MediaStream:
    urls = [item.get("baseUrl") or item.get("base_url")]
    urls += list(item.get("backupUrl") or item.get("backup_url") or [])
    return MediaStream(tuple(u for u in urls if u), kind, f"{kind} {item.get('id')} ({item.get('codecs', '')})")
