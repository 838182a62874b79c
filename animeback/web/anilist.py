"""/anilist: the AniList GraphQL queries trace.moe clients send for a series (trace.moe serves an AniList proxy
there), answered from the library's metadata: `Media(id | search)` and `Page { media(id_in | search) }`."""

from __future__ import annotations

import json

from flask import Blueprint, jsonify, request

from ..errors import BadParameterError
from .graphql import Field, parse_query, select
from .responses import anilist_media
from .services import reading_body, services

bp = Blueprint("anilist", __name__)

MAX_PAGE = 50  # AniList's own page size limit


def _request_query() -> tuple[str, dict, str | None]:
    """The query, variables and operation name of a GraphQL request: a JSON body, or GET parameters."""
    if request.method == "GET":
        raw_variables = request.args.get("variables") or "{}"
        try:
            variables = json.loads(raw_variables)
        except ValueError:
            raise BadParameterError("variables must be a JSON object") from None
        query, name = request.args.get("query", ""), request.args.get("operationName")
    else:
        with reading_body():
            body = request.get_json(force=True, silent=True)
        if not isinstance(body, dict):
            raise BadParameterError('send a JSON object {"query": "...", "variables": {...}}')
        query, variables, name = body.get("query", ""), body.get("variables"), body.get("operationName")
        variables = {} if variables is None else variables
    if not isinstance(query, str) or not query.strip():
        raise BadParameterError("no GraphQL query given")
    if not isinstance(variables, dict) or not (name is None or isinstance(name, str)):
        raise BadParameterError("variables must be a JSON object and operationName a string")
    return query, variables, name


class _Library:
    """The series as AniList media, read from the catalogue once per request."""

    def __init__(self) -> None:
        self.catalogue = services().store.catalogue
        self._numbers: dict[str, int] | None = None

    def numbers(self) -> dict[str, int]:
        if self._numbers is None:
            self._numbers = self.catalogue.numbered_series()
        return self._numbers

    def media(self, number: int) -> dict | None:
        folders = self.catalogue.series_with_number(number)
        if not folders:
            return None
        return anilist_media(number, self.catalogue.get_series(folders[0]) or {})

    def matching(self, arguments: dict) -> list[dict]:
        """Media for AniList's arguments: id, id_in, search (a case-insensitive part of any title)."""
        if "id" in arguments:
            numbers = [arguments["id"]] if _is_id(arguments["id"]) else []
        elif "id_in" in arguments:
            given = arguments["id_in"] if isinstance(arguments["id_in"], list) else []
            numbers = [n for n in given if _is_id(n)][:MAX_PAGE]
        else:
            numbers = sorted(set(self.numbers().values()))
        found = [m for m in (self.media(n) for n in numbers) if m is not None]
        search = arguments.get("search")
        if isinstance(search, str) and search.strip():
            needle = search.strip().casefold()
            found = [m for m in found if any(needle in t.casefold() for t in _titles(m))]
        return found


def _is_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63


def _titles(media: dict) -> list[str]:
    names = [t for t in (media.get("title") or {}).values() if isinstance(t, str)]
    return names + [s for s in media.get("synonyms") or [] if isinstance(s, str)]


def _resolve(root: Field, library: _Library, errors: list[dict]):
    if root.name == "Media":
        found = library.matching(root.arguments)
        if not found:
            errors.append({"message": "Not Found.", "status": 404, "locations": [], "path": [root.alias]})
            return None
        return select(found[0], root.selections)
    if root.name == "Page":
        per_page = root.arguments.get("perPage")
        per_page = per_page if isinstance(per_page, int) and 0 < per_page <= MAX_PAGE else MAX_PAGE
        page: dict = {}
        total = 0
        for sub in root.selections or []:
            if sub.name == "media":
                found = library.matching(sub.arguments)
                total = len(found)
                page[sub.name] = found[:per_page]
        page["pageInfo"] = {"total": total, "perPage": per_page, "currentPage": 1, "lastPage": 1, "hasNextPage": False}
        return select(page, root.selections)
    return None  # a root field this library has no data for


@bp.route("/anilist", methods=["GET", "POST"])
def anilist():
    """Answer an AniList GraphQL query from the library's series metadata; unknown fields are null."""
    query, variables, operation_name = _request_query()
    roots = parse_query(query, variables, operation_name)
    library = _Library()
    errors: list[dict] = []
    data = {root.alias: _resolve(root, library, errors) for root in roots}
    return jsonify({"data": data, "errors": errors} if errors else {"data": data})
