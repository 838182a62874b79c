"""ffmpeg/ffprobe as subprocesses (argument lists, never a shell): probe, find borders, sample frames, preview."""

from __future__ import annotations

import json
import logging
import queue
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from ..config import MediaSettings
from ..errors import MediaError
from ..imaging import MOMENT_WIDTH, Box, content_box
from ..model.mobilenet import INPUT_SIZE

log = logging.getLogger(__name__)

# Share of the probed duration that must decode, below which a file counts as truncated.
MIN_DECODED_SHARE = 0.9
_BORDER_PROBE_WIDTH = 160
_MP4_AUDIO = ("aac", "mp3")
_FALLBACK_FPS = 24  # frames per second assumed of a video whose rate ffprobe does not know
# The moment track's quality (x264's CRF): see benchmarks/README.md, "The exact moment".
MOMENT_CRF = 22


@dataclass(frozen=True)
class VideoInfo:
    """What ffprobe says of a video's first video stream."""

    duration: float
    fps: float
    width: int
    height: int
    codec: str
    has_audio: bool
    audio_codec: str = ""


@dataclass(frozen=True)
class Frame:
    """A sampled frame: its index in the sample sequence, its time in seconds, and RGB pixels."""

    index: int
    time: float
    pixels: np.ndarray


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, check=False)
    except FileNotFoundError:
        raise MediaError(f"{cmd[0]} not found: install ffmpeg (apt-get install ffmpeg)", environmental=True) from None


def _fraction(text: str) -> float:
    num, _, den = (text or "0/1").partition("/")
    try:
        return float(num) / float(den or 1)
    except (ValueError, ZeroDivisionError):
        return 0.0


def probe(path: Path, ffprobe: str = "ffprobe") -> VideoInfo:
    """Read duration, frame rate and size of a video, or raise MediaError naming the file and cause."""
    try:
        size = path.stat().st_size
        with open(path, "rb"):
            pass
    except FileNotFoundError:
        raise MediaError(f"{path}: file not found") from None
    except PermissionError:
        raise MediaError(f"{path}: permission denied", environmental=True) from None
    except OSError as exc:
        raise MediaError(f"{path}: cannot read ({exc.strerror or exc})", environmental=True) from None
    if size == 0:
        raise MediaError(f"{path}: the file is empty (0 bytes)")
    cmd = [
        ffprobe,
        "-v",
        "error",
        "-show_entries",
        "format=duration:stream=codec_type,codec_name,width,height,avg_frame_rate,r_frame_rate,duration",
        "-of",
        "json",
        "--",
        str(path),
    ]
    result = _run(cmd)
    try:
        data = json.loads(result.stdout or b"{}")
    except ValueError:
        data = {}
    streams = data.get("streams", [])
    video = next((s for s in streams if s.get("codec_type") == "video"), None)
    if result.returncode != 0 or video is None:
        reason = result.stderr.decode(errors="replace").strip().splitlines()
        cause = reason[-1].split(": ", 1)[-1] if reason else "no video stream"
        raise MediaError(f"{path}: not a readable video ({cause})")
    duration = float(data.get("format", {}).get("duration") or video.get("duration") or 0)
    fps = _fraction(video.get("avg_frame_rate")) or _fraction(video.get("r_frame_rate"))
    if duration <= 0:
        raise MediaError(f"{path}: the video has no duration (corrupt or truncated)")
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    return VideoInfo(
        duration,
        fps,
        int(video.get("width") or 0),
        int(video.get("height") or 0),
        str(video.get("codec_name")),
        audio is not None,
        str(audio.get("codec_name")) if audio else "",
    )


def detect_borders(path: Path, info: VideoInfo, ffmpeg: str = "ffmpeg") -> Box | None:
    """Black bars burnt into a whole video, found on its keyframes; None when there are none.

    A row or column is a bar only if it is black in every keyframe, so dark scenes cannot fake one.
    """
    if not info.width or not info.height:
        return None
    probe_h = max(2, round(_BORDER_PROBE_WIDTH * info.height / info.width / 2) * 2)
    cmd = [
        ffmpeg,
        "-v",
        "error",
        "-skip_frame",
        "nokey",
        "-i",
        str(path),
        "-map",
        "0:v:0",
        "-vf",
        f"scale={_BORDER_PROBE_WIDTH}:{probe_h}",
        "-fps_mode",
        "passthrough",
        "-pix_fmt",
        "gray",
        "-f",
        "rawvideo",
        "-",
    ]
    result = _run(cmd)
    size = _BORDER_PROBE_WIDTH * probe_h
    count = len(result.stdout) // size
    if count < 3:  # too few keyframes to tell bars from a dark shot
        return None
    frames = np.frombuffer(result.stdout[: count * size], np.uint8).reshape(count, probe_h, _BORDER_PROBE_WIDTH)
    box = content_box(frames.max(axis=0))
    if box.w >= _BORDER_PROBE_WIDTH - 2 and box.h >= probe_h - 2:
        return None
    sx, sy = info.width / _BORDER_PROBE_WIDTH, info.height / probe_h
    # Round inwards to even pixels so the crop keeps no sliver of bar and suits yuv420p.
    x0, y0 = int(np.ceil(box.x * sx / 2) * 2), int(np.ceil(box.y * sy / 2) * 2)
    x1 = int(np.floor((box.x + box.w) * sx / 2) * 2)
    y1 = int(np.floor((box.y + box.h) * sy / 2) * 2)
    return Box(x0, y0, x1 - x0, y1 - y0)


def crop_filter(box: Box) -> str:
    """ffmpeg's crop filter for a box."""
    return f"crop={box.w}:{box.h}:{box.x}:{box.y}"


@dataclass(frozen=True)
class OpenedVideo:
    """A video that ffprobe read, with the black bars burnt into all of it (None when there are none)."""

    path: Path
    info: VideoInfo
    crop: Box | None

    def read_frames(self, fps: float, width: int, ffmpeg: str = "ffmpeg") -> list[Frame]:
        """Every frame sampled at `fps`, cropped, scaled to `width` (aspect kept), as RGB (for training)."""
        w, h = (self.crop.w, self.crop.h) if self.crop else (self.info.width, self.info.height)
        height = max(2, round(width * h / max(w, 1) / 2) * 2)
        chain = f"fps={fps}" + (f",{crop_filter(self.crop)}" if self.crop else "")
        cmd = [
            ffmpeg,
            "-v",
            "error",
            "-nostdin",
            "-i",
            str(self.path),
            "-map",
            "0:v:0",
            "-vf",
            f"{chain},scale={width}:{height}:flags=area,format=rgb24",
            "-f",
            "rawvideo",
            "-",
        ]
        result = _run(cmd)
        data = result.stdout
        size = width * height * 3
        if result.returncode != 0 and len(data) < size:
            reason = result.stderr.decode(errors="replace").strip().splitlines()
            raise MediaError(f"{self.path}: ffmpeg failed ({reason[-1] if reason else f'exit {result.returncode}'})")
        frames = np.frombuffer(data[: len(data) // size * size], np.uint8).reshape(-1, height, width, 3)
        return [Frame(i, i / fps, frame) for i, frame in enumerate(frames)]


def open_video(path: Path, media: MediaSettings) -> OpenedVideo:
    """Probe a video and find its black bars: the first steps of every reader of the library's videos."""
    info = probe(path, media.ffprobe)
    return OpenedVideo(path, info, detect_borders(path, info, media.ffmpeg))


def preview_height(info: VideoInfo, wanted: int) -> int:
    """The preview's height: the configured one, never above the source's, and even for x264."""
    return max(2, min(wanted, info.height or wanted) // 2 * 2)


class FrameSampler:
    """Decodes a video once: streams frames sampled at `fps` (cropped, squashed to `size` x `size`, by default the
    CNN input) through a pipe while the same ffmpeg process writes the web preview mp4 (when `preview` is given)
    and the moment track (when `moments` is given: the picture inside the black bars, grey, MOMENT_WIDTH wide, at
    the video's own frame rate, which search decodes for a scene's exact moment)."""

    def __init__(
        self,
        video: OpenedVideo,
        fps: float,
        media: MediaSettings,
        preview: Path | None = None,
        size: int = INPUT_SIZE,
        queue_size: int = 256,
        *,
        moments: Path | None = None,
    ):
        self.path, self.info, self.crop = video.path, video.info, video.crop
        self.fps, self.preview, self.moments, self.size = fps, preview, moments, size
        self.settings = media
        self.frames_read = 0
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._stderr = b""
        self._process: subprocess.Popen | None = None

    @classmethod
    def from_settings(
        cls,
        media: MediaSettings,
        video: OpenedVideo,
        preview: Path | None = None,
        size: int = INPUT_SIZE,
        moments: Path | None = None,
    ) -> FrameSampler:
        """The sampler `process` uses: media.sample_fps and the configured preview encoding."""
        return cls(video, media.sample_fps, media, preview if media.preview else None, size, moments=moments)

    def command(self) -> list[str]:
        s = self.settings
        sample = f"setpts=PTS-STARTPTS,fps={self.fps}"
        if self.crop:
            sample += f",{crop_filter(self.crop)}"
        sample += f",scale={self.size}:{self.size}:flags=area,format=rgb24"
        cmd = [s.ffmpeg, "-v", "error", "-nostdin", "-y"]
        if s.skip_loop_filter:  # deblocking is invisible after downscaling and costs a fifth of decoding
            cmd += ["-skip_loop_filter", "all"]
        cmd += ["-i", str(self.path)]
        # A keyframe every second: a search's exact moment (query/refine.py) and a preview clip decode from the
        # keyframe before their start, at most one second of frames (3-7% larger previews).
        keyframes = ["-g", str(max(1, round(self.info.fps or _FALLBACK_FPS)))]
        branches, outputs = [f"{sample}[f]"], []
        if self.preview is not None:
            height = preview_height(self.info, s.preview_height)
            branches.append(f"scale=-2:{height}:flags=fast_bilinear,format=yuv420p[p]")
            outputs += ["-map", "[p]", "-map", "0:a:0?", "-c:v", "libx264", "-preset", s.preview_preset]
            outputs += ["-tune", "animation", "-crf", str(s.preview_crf), *keyframes]
            # Audio browsers play in mp4 is copied (free); anything else is encoded to AAC (~2% of decode time).
            outputs += (
                ["-c:a", "copy"] if self.info.audio_codec in _MP4_AUDIO else ["-c:a", "aac", "-b:a", "96k", "-ac", "2"]
            )
            outputs += ["-movflags", "+faststart", "-f", "mp4", str(self.preview)]
        if self.moments is not None:
            inside = f"{crop_filter(self.crop)}," if self.crop else ""
            branches.append(f"{inside}scale={MOMENT_WIDTH}:-2:flags=area,format=gray[m]")
            # fastdecode (no CABAC, no deblocking): search decodes it 40% faster, for 4% more bytes.
            outputs += ["-map", "[m]", "-c:v", "libx264", "-preset", "veryfast", "-tune", "fastdecode"]
            outputs += ["-crf", str(MOMENT_CRF), *keyframes]
            outputs += ["-movflags", "+faststart", "-f", "mp4", str(self.moments)]
        if len(branches) == 1:
            graph = f"[0:v:0]{branches[0]}"
        else:
            labels = [f"[v{i}]" for i in range(len(branches))]
            graph = ";".join([f"[0:v:0]split={len(branches)}{''.join(labels)}", *map("".join, zip(labels, branches))])
        cmd += ["-filter_complex", graph, *outputs]
        cmd += ["-map", "[f]", "-f", "rawvideo", "-"]
        return cmd

    def _read_frames(self, stdout: IO[bytes]) -> None:
        frame_bytes = self.size * self.size * 3
        index = 0
        try:
            while True:
                buf = stdout.read(frame_bytes)  # a buffered reader: returns a whole frame, or less only at EOF
                if len(buf) < frame_bytes:
                    break
                pixels = np.frombuffer(buf, np.uint8).reshape(self.size, self.size, 3)
                self._queue.put(Frame(index, index / self.fps, pixels))
                index += 1
        finally:
            self.frames_read = index
            self._queue.put(None)

    def _read_stderr(self, stderr: IO[bytes]) -> None:
        self._stderr = stderr.read()

    def __iter__(self) -> Iterator[Frame]:
        process = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=1 << 20
        )
        self._process = process
        assert process.stdout is not None and process.stderr is not None  # both are pipes
        readers = [
            threading.Thread(target=self._read_frames, args=(process.stdout,), daemon=True),
            threading.Thread(target=self._read_stderr, args=(process.stderr,), daemon=True),
        ]
        for t in readers:
            t.start()
        try:
            while (frame := self._queue.get()) is not None:
                yield frame
            returncode = process.wait()
            for t in readers:
                t.join()
        finally:
            self.close()
        message = self._stderr.decode(errors="replace").strip().splitlines()
        if returncode != 0:
            text = "\n".join(message)
            # A full disk or an unwritable preview folder is no fault of the file: it is tried again next run.
            environmental = any(cause in text for cause in ("No space left on device", "Permission denied"))
            raise MediaError(
                f"{self.path}: ffmpeg failed ({message[-1] if message else f'exit {returncode}'})", environmental
            )
        decoded = self.frames_read / self.fps
        if self.frames_read == 0 or decoded < MIN_DECODED_SHARE * self.info.duration - 1.0 / self.fps:
            raise MediaError(
                f"{self.path}: truncated or corrupt video (decoded {decoded:.1f} s of {self.info.duration:.1f} s)"
            )
        if message:
            log.warning("%s: ffmpeg reported: %s", self.path, message[-1])

    def close(self) -> None:
        """Stop ffmpeg if it is still running (on error or interruption)."""
        proc = self._process
        if proc and proc.poll() is None:
            proc.kill()
            proc.wait()
        while True:  # unblock the reader thread if it waits on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
