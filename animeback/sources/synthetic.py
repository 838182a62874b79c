"""Synthetic "episodes" made with ffmpeg's lavfi sources: distinct scenes, hard cuts and a static stretch."""

from __future__ import annotations

import random
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

# Points on the edge of the Mandelbrot set, where zooms stay detailed.
_MANDELBROT_POINTS = [
    (-0.743643887, -0.131825904),
    (-0.77568377, 0.13646737),
    (-1.25066, 0.02012),
    (0.001643721971153, -0.822467633298876),
    (-0.235125, 0.827215),
    (0.3750001200, -0.2166393884),
    (-1.62917, -0.0203968),
    (0.2549870375, -0.0005679790),
]


def _scene(kind: str, rng: random.Random, size: str, rate: int, seconds: float) -> str:
    hue = f"hue=h={rng.uniform(0, 360):.0f}:s={rng.uniform(0.6, 1.6):.2f}"  # no two episodes share a palette
    if kind == "mandelbrot":  # a slow zoom into a point of the set's edge: every moment looks different
        x, y = rng.choice(_MANDELBROT_POINTS)
        return (
            f"mandelbrot=size={size}:rate={rate}:start_x={x}:start_y={y}:start_scale={rng.uniform(0.05, 0.3):.3f}"
            f":end_scale=0.0005:end_pts={rng.uniform(30, 60):.0f},{hue}"
        )
    if kind == "life":

        def colour() -> str:
            return "#" + "".join(f"{rng.randrange(256):02x}" for _ in range(3))

        return (
            f"life=size={size}:rate={rate}:seed={rng.randrange(1 << 30)}:ratio={rng.uniform(0.1, 0.5):.2f}"
            f":mold=8:life_color={colour()}:death_color={colour()}:mold_color={colour()}"
        )
    if kind == "cellauto":
        tint = ":".join(f"{c}='val*{rng.uniform(0.2, 1.0):.2f}+{rng.randrange(80)}'" for c in "rgb")
        return (
            f"cellauto=size={size}:rate={rate}:rule={rng.choice([18, 30, 90, 110, 150])}:seed={rng.randrange(1 << 30)}"
            f",format=rgb24,lutrgb={tint}"
        )
    if kind == "static":  # a held frame: a still shot that lasts several seconds
        x, y = rng.choice(_MANDELBROT_POINTS)
        scale = rng.uniform(0.02, 0.2)
        return f"mandelbrot=size={size}:rate={rate}:start_x={x}:start_y={y}:start_scale={scale:.4f}:end_scale={scale:.4f},{hue}"
    raise ValueError(kind)


def episode_scenes(seed: int, duration: float) -> list[tuple[str, float, float]]:
    """The (kind, start, end) scenes of a synthetic episode: a fixed plan drawn from the seed."""
    rng = random.Random(seed)
    kinds = ["mandelbrot", "life", "cellauto", "mandelbrot", "life", "cellauto"]
    rng.shuffle(kinds)
    n = max(3, min(len(kinds) + 1, round(duration / 4)))
    plan = kinds[: n - 1] + ["static"]
    # Cuts at jittered even intervals: every scene lasts at least a second and a half.
    step = duration / n
    bounds = [0.0] + [round(step * (i + rng.uniform(-0.3, 0.3)), 2) for i in range(1, n)] + [duration]
    return [(kind, bounds[i], bounds[i + 1]) for i, kind in enumerate(plan)]


def make_episode(
    path: Path,
    seed: int,
    duration: float = 20.0,
    size: tuple[int, int] = (320, 180),
    rate: int = 24,
    audio: bool = True,
    extra_args: list[str] | None = None,
) -> Path:
    """Write a synthetic episode (H.264/AAC mp4 unless the suffix says otherwise) and return its path."""
    rng = random.Random(seed * 7919)
    dims = f"{size[0]}x{size[1]}"
    inputs, labels = [], []
    scenes = episode_scenes(seed, duration)
    for i, (kind, start, end) in enumerate(scenes):
        source = _scene(kind, rng, dims, rate, end - start)
        inputs.append(f"{source},trim=duration={end - start:.3f},setpts=PTS-STARTPTS,format=yuv420p[s{i}]")
        labels.append(f"[s{i}]")
    graph = ";".join(inputs) + f";{''.join(labels)}concat=n={len(labels)}:v=1:a=0[v]"
    cmd = ["ffmpeg", "-v", "error", "-y", "-filter_complex", graph]
    if audio:
        cmd += ["-f", "lavfi", "-i", f"sine=frequency={200 + seed % 800}:sample_rate=44100:duration={duration}"]
    cmd += ["-map", "[v]"] + (["-map", "0:a"] if audio else [])
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".webm":
        cmd += ["-c:v", "libvpx", "-crf", "8", "-b:v", "2M", "-deadline", "good", "-cpu-used", "5"]
        cmd += ["-c:a", "libopus"] if audio else []
    elif suffix == ".gif":
        cmd = [c for c in cmd if c not in ("-map", "0:a")] if audio else cmd
    else:
        cmd += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p"]
        cmd += ["-c:a", "aac", "-b:a", "64k"] if audio else []
    cmd += (extra_args or []) + ["-t", str(duration), str(path)]
    if suffix == ".gif" and audio:
        cmd = ["ffmpeg", "-v", "error", "-y", "-filter_complex", graph, "-map", "[v]", "-t", str(duration), str(path)]
    subprocess.run(cmd, check=True)
    return path


def grab_frame(video: Path, at: float, out: Path, vf: str | None = None) -> Path:
    """Save the frame shown at `at` seconds as an image (format from out's suffix), optionally filtered."""
    cmd = ["ffmpeg", "-v", "error", "-y", "-ss", f"{at:.3f}", "-i", str(video), "-frames:v", "1"]
    if vf:
        cmd += ["-vf", vf]
    subprocess.run(cmd + [str(out)], check=True)
    return out


@dataclass(frozen=True)
class SeasonEpisode:
    """A generated episode of a season: its file and where its opening, middle and ending lie (seconds)."""

    path: Path
    opening: tuple[float, float]
    middle: tuple[float, float]
    ending: tuple[float, float]


def _credits(seed: int) -> str:
    """Filters that burn two lines of "text" (rows of glyph-sized white boxes) into the lower third, with words of
    lengths drawn from the seed: credits that differ from episode to episode."""
    rng = random.Random(seed)
    glyphs = []
    for line in range(2):
        x = rng.randrange(20, 120)
        for _ in range(rng.randrange(10, 18)):
            if rng.random() < 0.2:
                x += 6  # a space between words
            glyphs.append(f"drawbox=x={x}:y={130 + 12 * line}:w=4:h=7:color=white@0.9:t=fill")
            x += 6
    return ",".join(glyphs)


COLD_OPEN_S = 2.0  # episode 3 of a generated season opens with this much of its own before the opening


def season_plan(
    folder: Path, episodes: int = 4, opening_s: float = 20.0, middle_s: float = 16.0, ending_s: float = 14.0
) -> list[SeasonEpisode]:
    """Where make_season puts each episode's file, opening, middle and ending (without making anything)."""
    plan = []
    for number in range(1, episodes + 1):
        start = COLD_OPEN_S if number == 3 else 0.0
        middle, ending = start + opening_s, start + opening_s + middle_s
        plan.append(
            SeasonEpisode(
                folder / f"Season - {number:02d}.mp4",
                (start, middle),
                (middle, ending),
                (ending, ending + ending_s),
            )
        )
    return plan


def make_season(
    folder: Path,
    episodes: int = 4,
    opening_s: float = 20.0,
    middle_s: float = 16.0,
    ending_s: float = 14.0,
    seed: int = 500,
) -> list[SeasonEpisode]:
    """A season of episodes that share an opening and an ending, as a real season does: every episode is encoded
    at its own CRF; episode 3 (when there is one) opens with a 2 s cold open, so its opening starts 2 s later;
    episode 4 has its own credits burnt into the opening. The middles are distinct."""
    parts = folder / ".parts"
    opening = make_episode(parts / "opening.mp4", seed=seed, duration=opening_s, audio=False)
    ending = make_episode(parts / "ending.mp4", seed=seed + 1, duration=ending_s, audio=False)
    cold_open = make_episode(parts / "cold_open.mp4", seed=seed + 2, duration=COLD_OPEN_S, audio=False)
    plan = season_plan(folder, episodes, opening_s, middle_s, ending_s)
    for number, episode in enumerate(plan, 1):
        middle = make_episode(parts / f"middle{number}.mp4", seed=seed + 10 + number, duration=middle_s, audio=False)
        sources = ([cold_open] if episode.opening[0] else []) + [opening, middle, ending]
        credits = _credits(seed + number) if number == 4 else "null"
        graph = "".join(f"[{i}:v]{credits if src == opening else 'null'}[p{i}];" for i, src in enumerate(sources))
        graph += "".join(f"[p{i}]" for i in range(len(sources))) + f"concat=n={len(sources)}:v=1:a=0[v]"
        cmd = ["ffmpeg", "-v", "error", "-y"] + [a for src in sources for a in ("-i", str(src))]
        crf = str(16 + 5 * (number % 4))
        cmd += ["-filter_complex", graph, "-map", "[v]", "-c:v", "libx264", "-preset", "veryfast", "-crf", crf]
        subprocess.run(cmd + ["-pix_fmt", "yuv420p", str(episode.path)], check=True)
    shutil.rmtree(parts)
    return plan
