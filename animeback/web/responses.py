"""The trace.moe response format: results, the AniList-shaped series info, the whole body."""

from __future__ import annotations

from ..query.search import SceneMatch, SearchOutcome


def series_key(series_id: str) -> int | str:
    """A series id as trace.moe's `anilist` field: an int when numeric."""
    return int(series_id) if series_id.isdigit() else series_id


def anilist_info(series_id: str, metadata: dict) -> dict:
    """The series' metadata in AniList's shape (title object, synonyms, isAdult), as trace.moe clients expect."""
    titles = dict(metadata.get("titles") or {})
    if isinstance(metadata.get("title"), str) and not (titles.get("romaji") or titles.get("english")):
        titles["romaji"] = metadata["title"]  # the library's display title, where clients look for a Latin one
    info = {k: v for k, v in metadata.items() if k not in ("title", "titles")}
    info.update(
        id=series_key(series_id),
        title=titles,
        synonyms=metadata.get("synonyms", []),
        isAdult=bool(metadata.get("isAdult", False)),
    )
    return info


def trace_moe_result(
    match: SceneMatch, series_info: dict | None = None, video: str | None = None, image: str | None = None
) -> dict:
    """A match in trace.moe's result shape; with series_info, `anilist` is that metadata in AniList's shape."""
    anilist = series_key(match.series_id) if series_info is None else anilist_info(match.series_id, series_info)
    episode = match.episode
    bounds = episode if isinstance(episode, list) else [episode, episode]
    return {
        "anilist": anilist,
        "filename": match.filename,
        "episode": episode,
        "episode_start": bounds[0],
        "episode_end": bounds[-1],
        "duration": round(match.duration, 4),
        "from": round(match.start, 4),
        "at": round(match.at, 4),
        "to": round(match.end, 4),
        "similarity": round(match.similarity, 6),
        "video": video,
        "image": image,
    }


def trace_moe_response(outcome: SearchOutcome, results: list[dict]) -> dict:
    """The full trace.moe response body, plus the query region searched and whether the picture was blank."""
    box = outcome.box
    region = {"x": box.x, "y": box.y, "width": box.w, "height": box.h} if box else None
    return {
        "frameCount": outcome.frame_count,
        "error": "",
        "result": results,
        "region": region,
        "uninformative": outcome.uninformative,
    }
