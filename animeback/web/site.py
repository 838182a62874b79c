"""The website (search page, library page, static files), GET /status and the OpenAPI document."""

from __future__ import annotations

import os

from flask import Blueprint, jsonify, send_from_directory

from ..config import PROJECT_ROOT
from ..index import library_stats
from ..stores import EpisodeRecord
from .responses import anilist_info
from .services import current_caller, services

bp = Blueprint("site", __name__)

STATIC_DIR = PROJECT_ROOT / "static"
OPENAPI_FILE = "openapi.json"


def _page(name: str):
    response = send_from_directory(STATIC_DIR, name, max_age=0)
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' blob: data: https: http:; "
        "media-src 'self' blob:; style-src 'self'; script-src 'self'"
    )
    return response


@bp.get("/")
def index_page():
    return _page("index.html")


@bp.get("/library")
def library_page():
    return _page("library.html")


@bp.get("/static/<path:name>")
def static_file(name: str):
    return send_from_directory(STATIC_DIR, name, max_age=3600)  # safe_join inside: no path leaves static/


@bp.get("/favicon.ico")
def favicon():
    return send_from_directory(STATIC_DIR, "favicon.ico", max_age=86400, mimetype="image/x-icon")


@bp.get("/series")
def series_list():
    """Every series of the library with its integer id, title, cover, link and episodes (status, and why one failed)."""
    svc = services()
    current_caller()  # the rate limit applies: this reads the whole catalogue
    catalogue = svc.store.catalogue  # the catalogue alone: no model is loaded for this
    episodes: dict[str, list[EpisodeRecord]] = {}
    for record in catalogue.episodes():
        episodes.setdefault(record.series_id, []).append(record)
    numbers = catalogue.numbered_series()
    hidden = [str(svc.settings.library_path) + os.sep, str(svc.settings.data_path) + os.sep]
    listing = []
    for folder, records in episodes.items():
        number = numbers.get(folder)
        info = anilist_info(number if number is not None else folder, catalogue.get_series(folder) or {})
        listing.append(
            {
                "anilist": info["id"],
                "series": folder,
                "title": info["title"]["userPreferred"] or folder,
                "cover": info["coverImage"]["large"],
                "link": info["siteUrl"],
                "episodes": [
                    {
                        "filename": r.filename,
                        "episode": r.episode,
                        "status": str(r.status),
                        "error": _without_paths(r.error, hidden) or None,
                        "duration": round(r.duration, 3),
                    }
                    for r in sorted(records, key=lambda r: (_sort_key(r.episode), r.filename))
                ],
            }
        )
    listing.sort(key=lambda s: (str(s["title"]).casefold(), s["series"]))
    return jsonify(series=listing)


def _without_paths(message: str, prefixes: list[str]) -> str:
    """A message with the installation's folders taken out: anyone may read it."""
    for prefix in prefixes:
        message = message.replace(prefix, "")
    return message


def _sort_key(episode) -> float:
    first = episode[0] if isinstance(episode, list) and episode else episode
    return float(first) if isinstance(first, int | float) else float("inf")


@bp.get("/openapi.json")
def openapi():
    return send_from_directory(STATIC_DIR, OPENAPI_FILE, max_age=0, mimetype="application/json")


def _folder_bytes(path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                pass  # a file replaced while we walk
    return total


@bp.get("/status")
def status():
    svc = services()
    current_caller()  # the rate limit of /search applies: /status walks the data folder
    index = svc.index
    stats = index.catalogue.get_meta("stats") or library_stats(index.catalogue)  # before the first process
    settings = svc.settings
    # Anyone may ask: no path, host name or address of the installation is given away.
    backend = "Milvus server" if settings.milvus_server else "Milvus Lite (embedded)"
    return jsonify(
        series=stats["series"],
        episodes=stats["episodes"],
        failed=stats["failed"],
        frames=stats["vectors"],
        hours=round(stats["video_seconds"] / 3600, 3),
        index_bytes=_folder_bytes(settings.data_path),
        model=index.indexed_model() or index.model_name,
        milvus=backend,
        stills=svc.stills.count(),
    )
