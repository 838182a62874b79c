"""The trace.moe-compatible API: /search, /me, and the /video and /image previews its results link to."""

from __future__ import annotations

import hashlib
import logging
import re
from urllib.parse import unquote_plus

from flask import Blueprint, Response, g, jsonify, request

from ..errors import AnimeBackError, BadImageError, BadParameterError, NoImageError, NotFoundError
from ..query.decode import decode_query
from ..stores import EpisodeStatus
from .fetch import fetch_query_image
from .previews import WIDTHS, find_shot, preview_source, render_clip, render_still
from .responses import trace_moe_response, trace_moe_result
from .services import UNLIMITED, USAGE_PERIODS, current_caller, reading_body, services

log = logging.getLogger(__name__)
bp = Blueprint("tracemoe", __name__)


@bp.before_request
def _identify() -> None:
    """Every route of the family (search, me, previews): the caller's key checked and rate limit counted, first."""
    current_caller()


RAW_BODY_TYPES = ("application/octet-stream", "application/x-www-form-urlencoded")
MAX_SERIES_ID = 256


def query_image() -> bytes:
    """The image of a search request: ?url=, a multipart file under any field name, or the raw body."""
    settings = services().settings
    if "url" in request.args:
        return fetch_query_image(settings, request.args["url"])
    mimetype = request.mimetype or ""
    if mimetype == "multipart/form-data":
        with reading_body():
            upload = next(iter(request.files.values()), None)
            if upload is None:
                raise NoImageError("Method Not Allowed: no image in the upload (send a file, a body or ?url=)")
            return upload.read()
    if mimetype.startswith("image/") or mimetype in RAW_BODY_TYPES:
        with reading_body():
            data = request.get_data(cache=False, parse_form_data=False)
        if not data:
            raise BadImageError("the image is empty")
        return data
    if request.method == "POST" and request.content_length:
        raise BadImageError(
            f"unsupported content type {mimetype!r}: send multipart/form-data, image/*, or application/octet-stream"
        )
    raise NoImageError("Method Not Allowed: no image given (send a file, a body or ?url=)")


def series_filter() -> list[str] | None:
    """The series folders that anilistID= names: by integer id, or by folder name (None: no filter)."""
    value = request.args.get("anilistID")
    if value is None or value == "":
        return None
    if len(value) > MAX_SERIES_ID or not value.isprintable():
        raise BadParameterError("anilistID must be a series id (at most 256 printable characters)")
    return services().searcher.series_folders(value)


@bp.route("/search", methods=["GET", "POST"])
def search():
    svc = services()
    who = current_caller()
    query = decode_query(svc.settings.search, query_image())  # a bad image costs no quota
    series = series_filter()
    with svc.search_slot(who):
        outcome = svc.searcher.search(
            query.rgb, cut_borders="cutBorders" in request.args, series=series, scale=query.scale
        )
    base = svc.settings.server.public_url.rstrip("/") or request.host_url.rstrip("/")
    catalogue = svc.index.catalogue
    with_info = "anilistInfo" in request.args

    def previews(episode_id: int, at: float) -> tuple[str, str]:
        token = svc.signer.issue(episode_id, at)
        # a query string, as trace.moe's preview URLs have: clients append `&size=l&mute` to them
        moment = f"?t={at:.3f}"
        return f"{base}/video/{token}{moment}", f"{base}/image/{token}{moment}"

    results = []
    for match in outcome.matches:
        info = (catalogue.get_series(match.series_id) or {}) if with_info else None
        results.append(trace_moe_result(match, info, previews))
    return jsonify(trace_moe_response(outcome, results))


# The statuses /me?period= reports a count for: what /search answers (errors.py's classes, and the server's own).
SEARCH_STATUSES = (200, 400, 402, 403, 405, 413, 429, 500, 503)


@bp.after_request
def _count_search(response: Response) -> Response:
    """A search's answer counts in the caller's usage history (/me?period=), success or error."""
    if request.endpoint == "tracemoe.search" and "caller" in g:
        try:
            services().record_usage(g.caller, response.status_code)
        except AnimeBackError as exc:  # a store host lost just now: the answer stands, the count is lost
            log.warning("search not counted in the usage history: %s", exc.message)
    return response


@bp.get("/me")
def me():
    """The caller's limits and usage today; with ?period=minute|hour|day, the usage history of that period."""
    svc = services()
    who = current_caller()
    period = request.args.get("period")
    if period is not None:
        if period not in USAGE_PERIODS:
            raise BadParameterError("period must be minute, hour or day")
        return jsonify(svc.usage(who, period, SEARCH_STATUSES))
    return jsonify(
        id=who.id,
        priority=who.priority,
        concurrency=who.concurrency or UNLIMITED,
        quota=who.quota or UNLIMITED,
        quotaUsed=svc.quota_used(who),
    )


def preview_options() -> dict[str, str]:
    """A preview URL's options, read whatever way a client appended them: `?size=l&mute` to a URL that already
    has a query string gives `...?t=1?size=l&mute`, which we read as t, size and mute (the last of a name wins)."""
    options: dict[str, str] = {}
    for part in re.split(r"[&?;]", request.query_string.decode("latin-1")):
        name, _, value = part.partition("=")
        if name:
            options[unquote_plus(name)] = unquote_plus(value)
    return options


def _preview_request(token: str):
    svc = services()
    ref = svc.signer.check(token)
    options = preview_options()
    size = options.get("size") or "m"
    if size not in WIDTHS:
        raise BadParameterError("size must be l, m or s")
    record = svc.index.catalogue.get_episode(ref.episode_id)
    if record is None or record.status != EpisodeStatus.INDEXED:
        raise NotFoundError("this episode is no longer in the index")
    return svc, ref, record, WIDTHS[size], options


@bp.get("/video/<token>")
def video(token: str):
    svc, ref, record, width, options = _preview_request(token)
    mute = "mute" in options
    key = f"video/{record.id}/{ref.at:.3f}/{width}/{int(mute)}"  # episode ids are never reused
    cached = svc.preview_cache.get(key)
    if cached is None:
        source = preview_source(svc.settings, record)
        ffmpeg = svc.settings.media.ffmpeg
        start, end = find_shot(source, ref.at, record.duration, svc.settings.server.preview_max_side_s, ffmpeg)
        clip = render_clip(source, start, end, width, mute, ffmpeg)
        svc.preview_cache.put(key, clip, {"start": start, "end": end})
    else:
        clip, header = cached
        start, end = header["start"], header["end"]
    response = Response(clip, mimetype="video/mp4")
    response.headers["Cache-Control"] = "max-age=86400"
    response.headers["x-video-start"], response.headers["x-video-end"] = f"{start:.3f}", f"{end:.3f}"
    response.headers["x-cache"] = "miss" if cached is None else "hit"
    # Range requests (206): Safari plays a video only from a server that answers them, and players seek with them.
    response.set_etag(hashlib.sha256(key.encode()).hexdigest()[:20])
    return response.make_conditional(request, accept_ranges=True, complete_length=len(clip))


@bp.get("/image/<token>")
def image(token: str):
    svc, ref, record, width, _ = _preview_request(token)
    webp = request.accept_mimetypes.quality("image/webp") > 0 and "image/webp" in request.headers.get("Accept", "")
    fmt = "webp" if webp else "jpeg"
    key = f"image/{record.id}/{ref.at:.3f}/{width}/{fmt}"
    cached = svc.preview_cache.get(key)
    if cached is None:
        still = render_still(preview_source(svc.settings, record), ref.at, width, fmt, svc.settings.media.ffmpeg)
        svc.preview_cache.put(key, still, {})
    else:
        still = cached[0]
    response = Response(still, mimetype="image/webp" if webp else "image/jpeg")
    response.headers["Cache-Control"] = "max-age=86400"
    response.headers["Vary"] = "Accept"
    response.headers["x-cache"] = "miss" if cached is None else "hit"
    return response
