"""Scene previews: signed, expiring preview ids, the shot around a moment (ffmpeg scene cuts), clips and stills.

A preview id names (episode id, moment) and an expiry, signed with HMAC-SHA256; nothing else from a
request reaches ffmpeg: the file comes from the catalogue record and every number is formatted by us.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import os
import re
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import Settings
from ..errors import MediaError, PreviewExpiredError, PreviewTamperedError
from ..keys import read_or_create_key

WIDTHS = {"l": 640, "m": 320, "s": 160}
SCENE_THRESHOLD = 0.12  # ffmpeg scene score of a cut: cuts in the test set scored 0.14-0.71, motion within shots < 0.09
_SHOWINFO_TIME = re.compile(r"pts_time:\s*([0-9.]+)")


@dataclass(frozen=True)
class PreviewRef:
    """What a preview id stands for."""

    episode_id: int
    at: float
    expires: int


class PreviewSigner:
    """Issues and checks preview ids."""

    def __init__(self, secret: bytes, ttl_s: int):
        self.secret, self.ttl_s = secret, ttl_s

    @classmethod
    def from_settings(cls, settings: Settings) -> PreviewSigner:
        """The signer for an installation: server.secret, else a random key kept in the data folder."""
        if settings.server.secret:
            return cls(settings.server.secret.encode(), settings.server.preview_ttl_s)
        return cls(read_or_create_key(settings.data_path / "preview.key"), settings.server.preview_ttl_s)

    def _mac(self, payload: bytes) -> str:
        digest = hmac.new(self.secret, payload, hashlib.sha256).digest()[:18]
        return base64.urlsafe_b64encode(digest).decode()

    def issue(self, episode_id: int, at: float, now: float | None = None) -> str:
        """A signed id for a moment of an episode, valid for ttl_s."""
        expires = int((now or time.time()) + self.ttl_s)
        payload = f"{episode_id}-{at:.3f}-{expires}".encode()
        return base64.urlsafe_b64encode(payload).decode().rstrip("=") + "." + self._mac(payload)

    def check(self, token: str, now: float | None = None) -> PreviewRef:
        """The moment a preview id stands for (403 when not ours, 410 when expired)."""
        encoded, _, mac = token.partition(".")
        try:
            payload = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except (ValueError, TypeError):
            raise PreviewTamperedError("Invalid preview id") from None
        if not mac or not hmac.compare_digest(mac.encode(), self._mac(payload).encode()):
            raise PreviewTamperedError("Invalid preview id")
        episode, at, expires = payload.decode().split("-")
        if int(expires) < (now or time.time()):
            raise PreviewExpiredError("This preview link has expired; search again for a fresh one")
        return PreviewRef(int(episode), float(at), int(expires))


def find_shot(
    video: Path, at: float, duration: float, max_side_s: float, ffmpeg: str = "ffmpeg"
) -> tuple[float, float]:
    """The shot containing `at` (from ffmpeg's scene cuts), at most max_side_s on each side of it."""
    start = max(0.0, at - max_side_s)
    end = min(duration, at + max_side_s) if duration > 0 else at + max_side_s
    args = [
        ffmpeg,
        "-hide_banner",
        "-nostdin",
        "-ss",
        f"{start:.3f}",
        "-t",
        f"{end - start:.3f}",
        "-i",
        str(video),
        "-an",
        "-sn",
        "-vf",
        f"scale=160:-2,select='gt(scene,{SCENE_THRESHOLD})',showinfo",
        "-f",
        "null",
        "-",
    ]
    result = subprocess.run(args, capture_output=True, text=True, errors="replace", timeout=60)
    if result.returncode != 0:
        raise MediaError(f"cannot read the preview of this episode: {result.stderr.strip()[-200:]}")
    cuts = [
        start + float(m)
        for line in result.stderr.splitlines()
        if "showinfo" in line
        for m in _SHOWINFO_TIME.findall(line)
    ]
    before = [c for c in cuts if c <= at]
    after = [c for c in cuts if c > at + 0.05]
    return (max(before) if before else start), (min(after) if after else end)


def render_clip(video: Path, start: float, end: float, width: int, mute: bool, ffmpeg: str = "ffmpeg") -> bytes:
    """An mp4 (H.264, faststart) of [start, end) scaled to width, with or without its audio."""
    with tempfile.TemporaryDirectory(prefix="animeback-clip-") as tmp:
        out = Path(tmp) / "clip.mp4"
        args = [
            ffmpeg,
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-ss",
            f"{start:.3f}",
            "-i",
            str(video),
            "-t",
            f"{max(0.1, end - start):.3f}",
            "-vf",
            f"scale={width}:-2",
            "-sn",
            "-dn",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-crf",
            "28",
            "-pix_fmt",
            "yuv420p",
            "-movflags",
            "+faststart",
        ]
        args += ["-an"] if mute else ["-c:a", "aac", "-b:a", "96k"]
        result = subprocess.run([*args, str(out)], capture_output=True, text=True, errors="replace", timeout=120)
        if result.returncode != 0 or not out.exists():
            raise MediaError(f"cannot cut the preview clip: {result.stderr.strip()[-200:]}")
        return out.read_bytes()


def render_still(video: Path, at: float, width: int, fmt: str, ffmpeg: str = "ffmpeg") -> bytes:
    """One frame at `at`, scaled to width, encoded as JPEG or WebP."""
    from PIL import Image

    args = [
        ffmpeg,
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-ss",
        f"{at:.3f}",
        "-i",
        str(video),
        "-frames:v",
        "1",
        "-vf",
        f"scale={width}:-2",
        "-f",
        "image2pipe",
        "-c:v",
        "png",
        "pipe:1",
    ]
    result = subprocess.run(args, capture_output=True, timeout=60)
    if result.returncode != 0 or not result.stdout:
        raise MediaError("cannot extract the preview image")
    image = Image.open(io.BytesIO(result.stdout)).convert("RGB")
    out = io.BytesIO()
    image.save(out, format="WEBP" if fmt == "webp" else "JPEG", quality=85)
    return out.getvalue()


def preview_source(settings: Settings, record) -> Path:
    """The file previews are cut from: the episode's web preview, else the original file."""
    if record.preview and settings.preview_path(record.preview).exists():
        return settings.preview_path(record.preview)
    return settings.library_path / record.relpath


class PreviewCache:
    """Rendered clips and stills on disk, bounded in bytes (the least recently served go first), so that the same
    preview asked for again costs a file read instead of an x264 encode.

    An entry is one file: a 4-byte length, a JSON header (what the response needs besides the bytes), the bytes.
    Entries are written to a temporary file and renamed into place, so a reader never sees half of one."""

    def __init__(self, folder: Path, max_bytes: int):
        self.folder, self.max_bytes = folder, max_bytes
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> PreviewCache:
        return cls(settings.data_path / "cache" / "previews", int(settings.server.preview_cache_mb * 2**20))

    def _path(self, key: str) -> Path:
        return self.folder / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".bin")

    def get(self, key: str) -> tuple[bytes, dict] | None:
        """The cached bytes and header of a key, or None."""
        if self.max_bytes <= 0:
            return None
        path = self._path(key)
        try:
            raw = path.read_bytes()
            os.utime(path)  # recently served: evicted last
        except OSError:
            return None
        size = int.from_bytes(raw[:4], "big")
        try:
            header = json.loads(raw[4 : 4 + size])
        except ValueError:
            return None
        return raw[4 + size :], header

    def put(self, key: str, data: bytes, header: dict) -> None:
        """Keep bytes and their header under a key, then evict the oldest entries beyond max_bytes."""
        if self.max_bytes <= 0 or len(data) > self.max_bytes:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        encoded = json.dumps(header).encode()
        fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".part")
        with os.fdopen(fd, "wb") as out:
            out.write(len(encoded).to_bytes(4, "big") + encoded + data)
        os.replace(tmp, self._path(key))
        with self._lock:
            self._evict()

    def _evict(self) -> None:
        entries = []
        for path in self.folder.glob("*.bin"):
            try:
                info = path.stat()
            except OSError:
                continue  # evicted by another worker meanwhile
            entries.append((info.st_mtime, info.st_size, path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
