"""The match-compatible image API under /match: stills added by filepath, searched in all 8 orientations.

Every answer is JSON `{"status": "ok"|"fail", "error": [...], "method": ..., "result": [...]}`; parameters come
as form fields, multipart or query string, as in match.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from werkzeug.exceptions import HTTPException

from ..errors import AnimeBackError, BadImageError, BadParameterError, NotFoundError
from ..query.decode import decode_query
from ..query.stills import parse_metadata
from .fetch import fetch_query_image
from .services import current_caller, http_error_message, reading_body, services

bp = Blueprint("match", __name__, url_prefix="/match")

_FALSE = ("false", "0", "no", "off")


def _envelope(method: str, result: list, status: int = 200, error: str | None = None):
    body = {"status": "fail" if error else "ok", "error": [error] if error else [], "method": method, "result": result}
    response = jsonify(body)
    response.status_code = status
    return response


def _method() -> str:
    return (request.endpoint or "match.unknown").split(".", 1)[1]


@bp.before_request
def _read_form() -> None:
    current_caller()  # an unknown key or a caller past the rate limit is refused before any work
    with reading_body():  # parsed here, under the guard: every route reads its parameters from the form
        request.form  # noqa: B018 - the property parses the body (and request.files with it)


@bp.errorhandler(AnimeBackError)
def _domain_error(exc: AnimeBackError):
    return _envelope(_method(), [], exc.status, exc.message)


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    return _envelope(_method(), [], exc.code or 500, http_error_message(exc))


def _param(name: str) -> str | None:
    value = request.form.get(name)
    return request.args.get(name) if value is None else value


def _image(suffix: str = ""):
    """The decoded image given as url<suffix> or image<suffix>."""
    svc = services()
    upload = request.files.get("image" + suffix)
    url = _param("url" + suffix)
    if upload is not None:
        data = upload.read()
    elif url:
        data = fetch_query_image(svc.settings, url)
    else:
        raise BadImageError(f"missing image{suffix}: upload a file as image{suffix} or give url{suffix}")
    return decode_query(svc.settings.search, data).rgb


def _int_param(name: str, default: int, low: int, high: int) -> int:
    raw = _param(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadParameterError(f"{name} must be an integer") from None
    if not low <= value <= high:
        raise BadParameterError(f"{name} must be between {low} and {high}")
    return value


def _writer() -> None:
    """Admit a write: an admin key, or this machine while none is configured."""
    svc = services()
    svc.check_writer(current_caller(), request.remote_addr or "unknown")


@bp.post("/add")
def add():
    _writer()
    filepath = _param("filepath")
    if not filepath:
        raise BadParameterError("missing filepath")
    raw = _param("metadata")
    metadata = parse_metadata(raw) if raw else None
    services().stills.add(filepath, _image(), metadata)
    return _envelope("add", [])


@bp.delete("/delete")
def delete():
    _writer()
    filepath = _param("filepath")
    if not filepath:
        raise BadParameterError("missing filepath")
    if not services().stills.delete(filepath):
        raise NotFoundError(f"no image with filepath {filepath!r}")
    return _envelope("delete", [])


@bp.post("/search")
def search():
    svc = services()
    who = current_caller()
    all_orientations = (_param("all_orientations") or "true").lower() not in _FALSE
    limit = _int_param("limit", svc.settings.match.max_results, 1, 1000)
    image = _image()
    with svc.search_slot(who):  # a search of stills costs what a scene search does, and counts alike
        matches = svc.stills.search(image, all_orientations, limit)
    return _envelope("search", [{"score": m.score, "filepath": m.filepath, "metadata": m.metadata} for m in matches])


@bp.post("/compare")
def compare():
    svc = services()
    who = current_caller()
    first, second = _image("1"), _image("2")
    with svc.search_slot(who):
        score = svc.stills.compare(first, second)
    return _envelope("compare", [{"score": score}])


@bp.get("/count")
def count():
    return _envelope("count", [services().stills.count()])


@bp.get("/list", endpoint="list")
def listing():
    offset = _int_param("offset", 0, 0, 1 << 31)
    limit = _int_param("limit", 20, 1, 10_000)
    return _envelope("list", services().stills.list(offset, limit))


@bp.get("/ping")
def ping():
    return _envelope("ping", [])
