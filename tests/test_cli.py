"""The command line as a user runs it: init, --help, process, search, errors, and kill -9 then resume."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from animeback.sources.synthetic import grab_frame
from tests.conftest import LIBRARY

ROOT = Path(__file__).resolve().parents[1]


def run_cli(args, cwd: Path, env_extra=None, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "ANIMEBACK_STORES__HOST_IDLE_S": "3", **(env_extra or {})}
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        **kw,
    )


def _stores_agree(workdir: Path) -> dict:
    """Open the stores the CLI wrote and check Milvus rows, LevelDB frames and records agree."""
    code = """
import json
from animeback.config import load_settings
from animeback.stores import VectorStore
from animeback.stores.host import connect
s = load_settings()
store = connect(s)
cat = store.catalogue
records = list(cat.episodes())
vec = VectorStore(store.vectors_uri, "", s.milvus.collection, 256)
print(json.dumps({"statuses": sorted(r.status for r in records), "milvus": vec.count(),
    "frames": cat.count_frames(), "kept": sum(r.frames_kept for r in records),
    "episodes_with_vectors": sorted(vec.episode_ids()), "recorded": sorted(r.id for r in records),
    "per_indexed_episode": [[vec.count(r.id), cat.count_frames(r.id), r.frames_kept]
                            for r in records if r.status == "indexed"]}))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=workdir, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    state = json.loads(out.stdout.strip().splitlines()[-1])
    # Right after a kill an episode may be mid-write ("indexing": some vectors, maybe not yet their frame
    # map); searches ignore it and the next run deletes its rows first. What must hold at every moment: every
    # vector belongs to a recorded episode, and every indexed episode is complete in both stores.
    assert set(state["episodes_with_vectors"]) <= set(state["recorded"])
    assert all(a == b == c for a, b, c in state["per_indexed_episode"])
    return state


def test_every_command_has_help(tmp_path):
    for command in ([], ["init"], ["process"], ["search"], ["train-pca"], ["status"], ["download-bilibili"]):
        out = run_cli([*command, "--help"], tmp_path)
        assert out.returncode == 0 and "usage:" in out.stdout


def test_first_run_writes_config_and_never_overwrites(tmp_path):
    out = run_cli([], tmp_path)
    assert out.returncode == 0 and "wrote" in out.stdout and "run.py process" in out.stdout
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["media"]["sample_fps"] > 0
    (tmp_path / "config.json").write_text(json.dumps({"library_dir": "x"}))
    out = run_cli([], tmp_path)
    assert "already exists" in out.stdout and json.loads((tmp_path / "config.json").read_text()) == {"library_dir": "x"}


def test_bad_config_is_one_line_error(tmp_path):
    (tmp_path / "config.json").write_text('{"media": {"sample_fps": -1}}')
    out = run_cli(["status"], tmp_path)
    assert out.returncode == 1
    assert out.stderr.strip() == "error: config key 'media.sample_fps' must be between 0.1 and 30.0; got -1.0"


def test_status_loads_no_model_and_a_missing_config_file_is_named(tmp_path):
    code = "import sys; from animeback.cli import main; code = main(['-q', 'status']); print(code, 'tensorflow' in sys.modules)"
    env = {**os.environ, "ANIMEBACK_STORES__HOST_IDLE_S": "2", "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.stdout.strip().splitlines()[-1] == "0 False", out.stdout + out.stderr  # a report, no TensorFlow
    assert "index: 0 series, 0 episodes" in out.stdout and "model none yet" in out.stdout
    out = run_cli(["--config", "typo.json", "status"], tmp_path)
    assert out.returncode == 1 and out.stderr.strip().splitlines() == [
        "error: config file typo.json not found (`python run.py init --config typo.json` writes one)"
    ]
    assert run_cli(["--config", "new.json", "init"], tmp_path).returncode == 0 and (tmp_path / "new.json").exists()


@pytest.mark.live  # starts gunicorn
def test_a_bad_config_under_gunicorn_is_one_line_too(tmp_path):
    (tmp_path / "config.json").write_text('{"media": {"sample_fps": -1}}')
    env = {**os.environ, "ANIMEBACK_CONFIG": str(tmp_path / "config.json")}
    out = subprocess.run(
        [sys.executable, "-m", "gunicorn", "app:flask_app"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1 and out.stderr.strip().splitlines() == [
        "error: config key 'media.sample_fps' must be between 0.1 and 30.0; got -1.0"
    ], out.stderr


def test_process_shows_each_episode_and_the_whole_run_with_its_eta(tmp_path, library_template):
    out = run_cli(["process"], tmp_path, {"ANIMEBACK_LIBRARY_DIR": str(library_template)})
    assert out.returncode == 0, out.stderr
    bars = out.stderr.replace("\r", "\n").splitlines()
    run_lines = [line for line in bars if line.startswith("episodes ") and "for the run]" in line]
    done = [line.split()[1] for line in run_lines]
    assert done[0] == f"0/{len(LIBRARY)}" and done[-1] == f"{len(LIBRARY)}/{len(LIBRARY)}", run_lines
    assert "100%" in run_lines[-1]
    # and each episode's own bar, in seconds of video
    assert any(LIBRARY[0][1][-30:] in line and f"/{LIBRARY[0][3]:.0f} s" in line for line in bars)


@pytest.mark.slow
def test_process_search_and_bad_queries(tmp_path, library_template):
    env = {"ANIMEBACK_LIBRARY_DIR": str(library_template)}
    out = run_cli(["-q", "process"], tmp_path, env)
    assert out.returncode == 0, out.stderr
    assert f"indexed {len(LIBRARY)} episode(s)" in out.stdout
    series, name, _seed, _duration = LIBRARY[1]
    shot = grab_frame(library_template / series / name, 6.3, tmp_path / "shot.png")
    out = run_cli(["-q", "search", str(shot), "--json"], tmp_path, env)
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["error"] == "" and body["frameCount"] > 0
    best = body["result"][0]
    assert best["filename"] == name and best["anilist"] == int(series) and abs(best["at"] - 6.3) <= 1.0
    out = run_cli(["-q", "search", str(shot)], tmp_path, env)
    assert name in out.stdout.splitlines()[1]

    (tmp_path / "text.jpg").write_text("not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    for path, message in [
        ("text.jpg", "not an image AnimeBack can read"),
        ("empty.png", "the image is empty"),
        ("missing.png", "cannot read"),
    ]:
        out = run_cli(["-q", "search", str(tmp_path / path)], tmp_path, env)
        assert out.returncode == 1
        assert out.stderr.strip().startswith(f"error: {tmp_path / path}: ") and message in out.stderr
        assert "Traceback" not in out.stderr


def _run_and_kill(workdir: Path, env: dict, rng: random.Random, after_line: str) -> None:
    """Start `process`, wait until it logs after_line, then kill -9 it after a random moment."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), "process"],
        cwd=workdir,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env},
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    for line in proc.stderr:
        if after_line in line or time.monotonic() > deadline:
            break
    time.sleep(rng.uniform(0.0, 2.5))
    os.killpg(proc.pid, signal.SIGKILL)  # the whole group: ffmpeg too (the store host is detached)
    proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_kill_9_during_process_then_resume(tmp_path, library_template, seed):
    env = {"ANIMEBACK_LIBRARY_DIR": str(library_template)}
    rng = random.Random(seed)
    _run_and_kill(tmp_path, env, rng, "[1/3] indexing")
    _stores_agree(tmp_path)
    _run_and_kill(tmp_path, env, rng, "indexing")
    _stores_agree(tmp_path)
    out = run_cli(["-q", "process"], tmp_path, env)
    assert out.returncode == 0, out.stderr
    state = _stores_agree(tmp_path)
    assert state["statuses"] == ["indexed"] * len(LIBRARY)
    assert state["milvus"] == state["frames"] == state["kept"]
    out = run_cli(["-q", "process"], tmp_path, env)
    assert "indexed 0 episode(s)" in out.stdout and f"skipped {len(LIBRARY)} unchanged" in out.stdout


@pytest.mark.slow
def test_a_store_host_killed_during_process_loses_nothing(tmp_path, library_template):
    env = {"ANIMEBACK_LIBRARY_DIR": str(library_template)}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), "process"],
        cwd=tmp_path,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "ANIMEBACK_STORES__HOST_IDLE_S": "3", **env},
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    for line in proc.stderr:
        if "[2/3] indexing" in line:
            break
    code = """
import os, signal
from animeback.config import load_settings
from animeback.stores.host import connect
store = connect(load_settings())
pid = store.host_pid
store.close()
os.kill(pid, signal.SIGKILL)
print(pid)
"""
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**os.environ, **env}, check=True, timeout=120)
    _, rest = proc.communicate(timeout=600)  # the rest of its log
    # Either the call in flight failed (one line, exit 1) or the run went on with a new host; nothing is lost
    # either way: the next run repairs what the dead host did not keep, and then every store agrees.
    assert proc.returncode in (0, 1) and "Traceback" not in (rest or "")
    out = run_cli(["-q", "process"], tmp_path, env)
    assert out.returncode == 0, out.stderr
    state = _stores_agree(tmp_path)
    assert state["statuses"] == ["indexed"] * len(LIBRARY)
    assert state["milvus"] == state["frames"] == state["kept"]


@pytest.mark.slow
def test_a_second_writer_is_refused_while_searches_go_on(tmp_path, library_template):
    import fcntl

    env = {"ANIMEBACK_LIBRARY_DIR": str(library_template)}
    (tmp_path / "data").mkdir()
    with open(tmp_path / "data" / "writer.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as a running `process` holds it
        lock.write("process 12345")
        lock.flush()
        out = run_cli(["-q", "process"], tmp_path, env)
        assert out.returncode == 1 and "being written by process 12345" in out.stderr
        assert "Traceback" not in out.stderr
        out = run_cli(["-q", "status"], tmp_path, env)
        assert out.returncode == 0, out.stderr


def test_watch_refuses_a_missing_library_and_conflicting_flags_in_one_line(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"library_dir": str(tmp_path / "nowhere"), "data_dir": "data"}))
    out = run_cli(["watch"], tmp_path)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert (
        out.stderr.strip().splitlines()[-1].startswith("error: the library folder") and "does not exist" in out.stderr
    )
    out = run_cli(["process", "--watch", "--reindex"], tmp_path)
    assert out.returncode == 1 and out.stderr.strip() == (
        "error: --watch takes none of --reindex, --allow-empty, --allow-removal; run those once first"
    )
