"""The library folder: `<series id>/<episode file>`, episode numbers parsed from file names."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import re
import stat
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".gif")
SERIES_METADATA_FILE = "series.json"

# Tried in order; each captures the episode number (or a range a-b) in group "ep".
_EPISODE_PATTERNS = [
    re.compile(r"S\d{1,2}E(?P<ep>\d{1,4})", re.I),
    re.compile(r"第\s*(?P<ep>\d+(?:\.\d+)?)\s*[话話集回]"),
    re.compile(r"(?:^|[\s._\-\[(])(?:EP|E|Episode|Ep\.?)\s*(?P<ep>\d+(?:\.\d+)?(?:\s*-\s*\d+)?)(?![\dp])", re.I),
    re.compile(r"\s-\s(?P<ep>\d+(?:\.\d+)?(?:-\d+)?)(?:v\d)?(?=\s|\[|\(|$)"),
    re.compile(r"\[(?P<ep>\d{1,4}(?:\.\d)?)(?:v\d)?\]"),
    re.compile(r"^(?P<ep>\d{1,4}(?:\.\d)?)$"),
    # a number ending the name ("Toradora 05"), but not one of a run of numbers (a clip's "0_30") or a year
    re.compile(r"(?:^|(?<![\d])[\s._])(?!(?:19|20)\d\d$)(?P<ep>\d{1,4})(?:v\d)?$"),
]
# Bracketed tags (resolution, CRC, codecs) and resolutions in parentheses: numbers that are no episode.
_NOISE = re.compile(
    r"\[(?:\d{3,4}p|[0-9A-F]{8}|x26[45]|HEVC|AVC|FLAC|AAC)[^\]]*\]|\((?:\d{3,4}p|[^)]*\d{3,4}x\d{3,4})[^)]*\)", re.I
)


@dataclass(frozen=True)
class EpisodeFile:
    """One video file found in the library."""

    series_id: str
    relpath: str  # "<series id>/<file>", the file's identity within the library
    path: Path
    size: int
    mtime_ns: int
    episode: int | float | list | None


def parse_episode_number(filename: str) -> int | float | list | None:
    """Episode number from a file name: 5, 5.5, [5, 6] for a range, or None when there is none."""
    stem = _NOISE.sub(" ", Path(filename).stem).strip().rstrip(" ._-")
    for pattern in _EPISODE_PATTERNS:
        match = pattern.search(stem)
        if not match:
            continue
        raw = match.group("ep").replace(" ", "")
        if "-" in raw:
            a, b = raw.split("-", 1)
            return [_number(a), _number(b)]
        return _number(raw)
    return None


def _number(text: str) -> int | float:
    value = float(text)
    return int(value) if value.is_integer() else value


@dataclass(frozen=True)
class LibraryScan:
    """What a library folder holds: its video files, and what looked like one but cannot be indexed, and why."""

    files: list[EpisodeFile]
    skipped: list[str]  # "<path>: <why>", one per entry


def scan_library(root: Path) -> LibraryScan:
    """Every video file under root/<series id>/, sorted by path. Files that are not videos are ignored; entries
    named like videos that are no file (a folder, a dangling symbolic link, a link loop) and series folders whose
    names are not UTF-8 are listed as skipped, with the reason."""
    if not root.is_dir():
        return LibraryScan([], [])
    found, skipped = [], []
    for series_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not _is_utf8(series_dir.name):
            # The series id goes to Milvus and to clients as text; a file name is kept losslessly instead.
            skipped.append(f"{series_dir}: the folder name is not valid UTF-8; rename it to index its episodes")
            continue
        for path in sorted(series_dir.iterdir()):
            if path.suffix.lower() not in VIDEO_EXTENSIONS or path.name.startswith("."):
                continue
            why = _not_a_file(path)
            if why:
                skipped.append(f"{path}: {why}")
                continue
            info = path.stat()
            found.append(
                EpisodeFile(
                    series_dir.name,
                    f"{series_dir.name}/{path.name}",
                    path,
                    info.st_size,
                    info.st_mtime_ns,
                    parse_episode_number(path.name),
                )
            )
    return LibraryScan(found, skipped)


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")  # a name that is not UTF-8 on disk arrives with surrogate escapes
    except UnicodeEncodeError:
        return False
    return True


def _not_a_file(path: Path) -> str:
    """Why an entry named like a video cannot be indexed ("" when it is a regular file, or a link to one)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "a symbolic link to nothing (its target is missing)" if path.is_symlink() else "vanished while read"
    except OSError as exc:
        return "a symbolic link loop" if exc.errno == errno.ELOOP else f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return ""
    return "a folder, not a video file" if stat.S_ISDIR(mode) else "not a regular file"


def read_series_metadata(series_dir: Path) -> dict:
    """The optional series.json of a series folder, or {} (a malformed one is logged and ignored)."""
    path = series_dir / SERIES_METADATA_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("ignoring %s: %s", path, exc)
        return {}
    if not isinstance(data, dict):
        log.warning("ignoring %s: it must hold a JSON object", path)
        return {}
    return data


MAX_ANILIST_ID = 2**31 - 1


def anilist_id(series_id: str, metadata: dict) -> int | None:
    """The AniList id of a series: series.json's "anilist", else the folder name when it is a number (and not
    another site's id: a bilibili season's folder is its season id), else None."""
    given = metadata.get("anilist")
    if isinstance(given, int) and not isinstance(given, bool) and 0 < given <= MAX_ANILIST_ID:
        return given
    if given is not None:
        log.warning('ignoring "anilist" of series %s: %r is not an AniList id (a whole number)', series_id, given)
    if metadata.get("source", "anilist") != "anilist":
        return None
    if series_id.isascii() and series_id.isdigit() and 0 < int(series_id) <= MAX_ANILIST_ID:
        return int(series_id)
    return None


def content_hash(path: Path, chunk: int = 4 << 20) -> str:
    """SHA-256 of a file's content, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
