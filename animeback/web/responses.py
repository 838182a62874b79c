"""The trace.moe response format: results, the AniList-shaped series info, the whole body."""

from __future__ import annotations

from collections.abc import Callable

from ..query.search import SceneMatch, SearchOutcome
from ..stores.catalogue import ASSIGNED_SERIES_NUMBERS


def series_key(match: SceneMatch) -> int | str:
    """A match's series as trace.moe's `anilist` field: its integer id (the folder name only in an index that
    `process` has not run on since series got integer ids)."""
    if match.series_number is not None:
        return match.series_number
    return int(match.series_id) if match.series_id.isascii() and match.series_id.isdigit() else match.series_id


def anilist_info(number: int | str, metadata: dict) -> dict:
    """The series' metadata in AniList's shape (title object, synonyms, isAdult, cover, links), as trace.moe
    clients expect; the metadata's other keys come along."""
    titles = dict(metadata.get("titles") or {})
    if isinstance(metadata.get("title"), str) and not (titles.get("romaji") or titles.get("english")):
        titles["romaji"] = metadata["title"]  # the library's display title, where clients look for a Latin one
    titles.setdefault("userPreferred", titles.get("english") or titles.get("romaji") or titles.get("native"))
    info = {k: v for k, v in metadata.items() if k not in ("title", "titles", "episodes")}
    cover = metadata.get("cover") or None
    real = isinstance(number, int) and number not in ASSIGNED_SERIES_NUMBERS  # an AniList id, not one of ours
    info.update(
        id=number,
        title=titles,
        synonyms=metadata.get("synonyms", []),
        isAdult=bool(metadata.get("isAdult", False)),
        coverImage={"large": cover, "medium": cover, "extraLarge": cover},
        siteUrl=f"https://anilist.co/anime/{number}" if real else metadata.get("link"),
    )
    return info


def anilist_media(number: int, metadata: dict) -> dict:
    """A series as AniList's GraphQL `Media` object, from the library's metadata (what it lacks stays null)."""
    media = anilist_info(number, metadata)
    episodes = metadata.get("episodes")
    media.update(
        type="ANIME",
        format=metadata.get("format"),
        episodes=len(episodes) if isinstance(episodes, list) and episodes else metadata.get("episodeCount"),
        description=metadata.get("intro") or metadata.get("description"),
        startDate=metadata.get("startDate") or {"year": None, "month": None, "day": None},
        endDate=metadata.get("endDate") or {"year": None, "month": None, "day": None},
    )
    return media


SEGMENT_NAMES = {"op": "Opening", "ed": "Ending", "recap": "Recap", "repeat": "Repeated scene"}


def episode_ranges(numbers: list[int | float | list | None]) -> str:
    """Episode numbers as people write them: "1-4, 7" (ranges of consecutive whole numbers), the rest as they are."""
    flat = sorted({float(n[0] if isinstance(n, list) else n) for n in numbers if n is not None and n != []})
    parts: list[str] = []
    run: list[float] = []
    for n in flat + [float("nan")]:
        if run and n == run[-1] + 1 and n.is_integer():
            run.append(n)
            continue
        if run:
            first, last = f"{run[0]:g}", f"{run[-1]:g}"
            parts.append(first if len(run) == 1 else f"{first}-{last}")
        run = [n] if n == n else []
    return ", ".join(parts)


def segment_label(match: SceneMatch) -> str:
    """What the website and the CLI say of a repeated sequence: "Opening, episodes 1-12" ("" for none)."""
    if match.segment is None:
        return ""
    numbers = [match.episode, *(o.episode for o in match.occurrences)]
    shown = episode_ranges(numbers)
    count = len(match.occurrences) + 1
    return f"{SEGMENT_NAMES[match.segment.value]}, " + (f"episodes {shown}" if shown else f"{count} episodes")


Previews = Callable[[int, float], tuple[str, str]]  # (episode id, time) -> (video URL, image URL)


def trace_moe_result(match: SceneMatch, series_info: dict | None = None, previews: Previews | None = None) -> dict:
    """A match in trace.moe's result shape; with series_info, `anilist` is that metadata in AniList's shape; with
    `previews`, the video and image preview URLs. Not trace.moe's: `series` (the series' folder name in the
    library), `segment` ("op", "ed", "recap", "repeat" for a sequence several episodes share, else null) and
    `occurrences` (the other episodes showing the same moment)."""
    number = series_key(match)
    anilist = number if series_info is None else anilist_info(number, series_info)
    episode = match.episode
    bounds = episode if isinstance(episode, list) else [episode, episode]
    video, image = previews(match.episode_id, match.at) if previews else (None, None)
    occurrences = []
    for place in match.occurrences:
        other_video, other_image = previews(place.episode_id, place.at) if previews else (None, None)
        occurrences.append(
            {
                "episode": place.episode,
                "filename": place.filename,
                "from": round(place.start, 4),
                "at": round(place.at, 4),
                "to": round(place.end, 4),
                "video": other_video,
                "image": other_image,
            }
        )
    return {
        "anilist": anilist,
        "series": match.series_id,
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
        "segment": match.segment.value if match.segment else None,
        "occurrences": occurrences,
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
