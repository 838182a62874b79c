"""ffmpeg stages: probing, sampling with timestamps, preview, borders, and errors naming file and cause."""

import itertools
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import av
import numpy as np
import pytest

from animeback.config import MediaSettings
from animeback.errors import MediaError
from animeback.imaging import MOMENT_WIDTH
from animeback.ingest.dedupe import Deduplicator
from animeback.ingest.media import FrameSampler, OpenedVideo, detect_borders, open_video, probe
from animeback.sources.synthetic import episode_scenes, make_episode


def test_sampler_streams_frames_with_times_and_writes_preview(library_template, tmp_path):
    video = library_template / "101" / "[Sub] Show One - 01 [1080p].mp4"
    info = probe(video)
    assert (info.width, info.height, info.has_audio) == (320, 180, True)
    assert info.duration == pytest.approx(20.0, abs=0.1)
    preview = tmp_path / "preview.mp4"
    settings = MediaSettings(preview_height=120)
    frames = list(FrameSampler(OpenedVideo(video, info, None), 2.0, settings, preview))
    assert len(frames) == 40
    assert [f.time for f in frames[:3]] == [0.0, 0.5, 1.0]
    assert frames[0].pixels.shape == (224, 224, 3)
    out = probe(preview)
    assert out.height == 120 and out.has_audio and out.duration == pytest.approx(20.0, abs=0.2)


def test_dedupe_keeps_contiguous_spans_and_collapses_the_static_shot(library_template):
    video = library_template / "101" / "[Sub] Show One - 01 [1080p].mp4"
    info = probe(video)
    static_start = episode_scenes(1, 20.0)[-1][1]
    sampler = FrameSampler(OpenedVideo(video, info, None), 4.0, MediaSettings())
    dedupe = Deduplicator(max_span_s=0)
    kept = list(dedupe.filter(sampler, info.duration))
    assert kept[0].start == 0.0 and kept[-1].end == pytest.approx(info.duration)
    assert all(a.end == b.start for a, b in itertools.pairwise(kept))
    assert sum(1 for k in kept if k.start > static_start + 0.3) == 0  # the held frame is stored once
    assert dedupe.kept == len(kept) < dedupe.sampled == 80
    # With spans capped at 1 s, the still shot is stored about once a second, no more.
    capped = list(
        Deduplicator(max_span_s=1.0).filter(
            FrameSampler(OpenedVideo(video, info, None), 4.0, MediaSettings()), info.duration
        )
    )
    still = [k for k in capped if k.start > static_start + 0.3]
    assert all(k.end - k.start <= 1.0 + 1e-6 for k in capped)
    assert len(still) <= int(20.0 - static_start) + 1


@pytest.mark.slow  # encodes a video
def test_burnt_in_letterbox_is_detected(tmp_path):
    plain = make_episode(tmp_path / "plain.mp4", seed=9, duration=12)
    video = tmp_path / "boxed.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(plain), "-vf", "pad=320:240:0:30:black", "-g", "24", str(video)], check=True
    )
    box = detect_borders(video, probe(video))
    assert box is not None and (box.x, box.w) == (0, 320) and abs(box.y - 30) <= 2 and abs(box.h - 180) <= 4
    assert open_video(video, MediaSettings()).crop == box  # the one helper every reader of videos uses


def _lumas(video: Path) -> tuple[list[int], list[np.ndarray]]:
    """Every frame's timestamp (in its stream's time base, from the stream's start) and luma plane."""
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        frames = [(f.pts - (stream.start_time or 0), f.to_ndarray(format="gray")) for f in container.decode(stream)]
    return [t for t, _ in frames], [luma for _, luma in frames]


def test_the_moment_track_is_the_picture_inside_its_bars_in_grey_at_every_frame(tmp_path):
    plain = make_episode(tmp_path / "plain.mp4", seed=9, duration=4)
    video = tmp_path / "boxed.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(plain), "-vf", "pad=320:240:0:30:black", "-g", "24", str(video)], check=True
    )
    preview, track = tmp_path / "preview.mp4", tmp_path / "moments.mp4"
    list(FrameSampler(open_video(video, MediaSettings()), 2.0, MediaSettings(), preview, moments=track))
    out = probe(track)
    assert (out.width, out.height, out.has_audio) == (MOMENT_WIDTH, 90, False)  # 320x180 inside the bars
    (track_times, track_lumas), (preview_times, _), (_, plain_lumas) = _lumas(track), _lumas(preview), _lumas(plain)
    assert len(track_lumas) == len(plain_lumas) == 96 and track_times == preview_times  # every frame, same clock
    shrunk = [luma.reshape(90, 2, 160, 2).mean(axis=(1, 3)).ravel() for luma in plain_lumas]  # grey, its size

    def likeness(i: int, j: int) -> float:
        return float(np.corrcoef(track_lumas[i].ravel(), shrunk[j])[0, 1]) if 0 <= j < len(shrunk) else -1.0

    same = [likeness(i, i) for i in range(len(shrunk))]
    assert np.median(same) > 0.95, "not the source's picture"
    # the frame of that moment, not a neighbour (a still shot's neighbours are as like it)
    assert all(same[i] >= max(likeness(i, i - 1), likeness(i, i + 1)) - 0.01 for i in range(len(shrunk)))


@pytest.mark.parametrize(
    "content,message",
    [
        (b"", "the file is empty (0 bytes)"),
        (b"not a video at all", "not a readable video"),
    ],
)
def test_probe_errors(tmp_path, content, message):
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(MediaError) as err:
        probe(path)
    assert str(path) in err.value.message and message in err.value.message


@pytest.mark.slow  # encodes a video
def test_truncated_video_is_reported(tmp_path):
    good = make_episode(tmp_path / "good.mkv", seed=4, duration=10)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    with pytest.raises(MediaError, match="truncated or corrupt video"):
        list(FrameSampler(open_video(cut, MediaSettings()), 2.0, MediaSettings()))


def test_unreadable_file_is_reported():
    folder = Path(tempfile.mkdtemp(dir="/tmp"))  # a world-traversable folder, unlike pytest's
    folder.chmod(0o755)
    path = make_episode(folder / "secret.mp4", seed=5, duration=2)
    path.chmod(0)
    code = (
        "import sys; from pathlib import Path; from animeback.ingest.media import probe\n"
        "try:\n    probe(Path(sys.argv[1]))\nexcept Exception as e:\n    print(e)\n"
    )
    cmd = [sys.executable, "-c", code, str(path)]
    if os.geteuid() == 0:  # root reads anything: check as an unprivileged user instead
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] + cmd
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert f"{path}: permission denied" in result.stdout, result.stderr
