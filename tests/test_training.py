"""`run.py train`: a real (tiny) fine-tuning run, its resume after an interruption, and model versioning."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from animeback.config import updated
from animeback.errors import IndexMismatchError
from animeback.index import Index
from animeback.ingest.indexer import process_library
from animeback.model.embedder import DEFAULT_FALSE_MATCH_THRESHOLD, Embedder
from animeback.model.finetune import CARD_NAME, HEAD_NAME
from animeback.query.search import DOUBTFUL_BELOW_THRESHOLD, REFINE_MIN_BELOW_THRESHOLD, Searcher
from animeback.sources.synthetic import grab_frame, make_episode
from animeback.training.train import CHECKPOINT_DIR, next_model_folder
from tests.conftest import ROOT, make_settings

pytestmark = pytest.mark.slow  # training a model takes minutes on a CPU

# Small, but with rounds of a few seconds, so that the run can be killed between its checkpoints.
TINY = ["--rounds", "3", "--views", "3", "--fps", "4"]


def _run_py(config: Path, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), "--config", str(config), "-q", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model trained by `run.py train` on two generated episodes, killed (-9) once after its first round."""
    tmp = tmp_path_factory.mktemp("train")
    videos = tmp / "videos"
    for seed in (31, 32):
        make_episode(videos / f"ep{seed}.mp4", seed=seed, duration=12.0, audio=False)
    (videos / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)  # not a video
    config = tmp / "config.json"
    config.write_text(json.dumps({"library_dir": str(tmp / "empty"), "data_dir": str(tmp / "data")}))
    out = tmp / "models" / "animeback-v1"
    first = _run_py(config, "train", "--videos", str(videos), "--out", str(out), *TINY, start_new_session=True)
    state = out / CHECKPOINT_DIR / "state.json"
    deadline = time.monotonic() + 300
    while not state.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert state.exists(), first.communicate()[1]
    os.killpg(first.pid, signal.SIGKILL)  # killed after the first round's checkpoint, mid-way through the next
    first.communicate(timeout=60)
    assert first.returncode == -signal.SIGKILL
    rounds_before = json.loads(state.read_text())["rounds_done"]
    assert rounds_before < 3 and not (out / CARD_NAME).exists()
    second = _run_py(config, "-v", "train", "--videos", str(videos), "--out", str(out), *TINY)
    stdout, stderr = second.communicate(timeout=600)
    assert second.returncode == 0, stderr
    return out, stdout, stderr, rounds_before, videos


def test_train_resumes_and_writes_a_versioned_model(trained):
    out, stdout, stderr, rounds_before, _ = trained
    assert f"resuming {out} after round {rounds_before} of 3" in stderr
    assert "skipping" in stderr and "broken.mp4: not a readable video" in stderr and "Traceback" not in stderr
    card = json.loads((out / CARD_NAME).read_text())
    assert card["name"] == "animeback" and card["version"] == 1 and card["dim"] == 256
    assert [h["round"] for h in card["training"]["history"]] == [1, 2, 3]  # every round once, none repeated
    assert card["training"]["videos"] == ["ep31.mp4", "ep32.mp4"]
    assert (out / HEAD_NAME).stat().st_size > 1_000_000 and not (out / CHECKPOINT_DIR).exists()
    assert "process --reindex" in stdout
    assert next_model_folder(out.parent).name == "animeback-v2"  # the next run would not overwrite it


def test_train_refuses_bad_input(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"library_dir": str(tmp_path / "empty")}))
    for args, message in (
        (["--rounds", "0"], "--rounds must be positive"),
        ([], "no videos to train on"),
        (["--videos", str(tmp_path / "nowhere")], "not a folder of videos"),
    ):
        proc = _run_py(config, "train", *args)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 1 and message in err and "Traceback" not in err
    env = {**os.environ, "ANIMEBACK_FEATURES__MODEL": str(tmp_path / "no-model")}
    proc = _run_py(config, "status", env=env)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and f"no trained model at {tmp_path / 'no-model'}" in err and "Traceback" not in err


def test_trained_model_indexes_searches_and_never_mixes_with_another(trained, tmp_path, embedder):
    out, _, _, _, videos = trained
    library = tmp_path / "library"
    (library / "7").mkdir(parents=True)
    for video in videos.iterdir():
        (library / "7" / video.name).symlink_to(video)
    settings = make_settings(tmp_path, library)
    with Index(settings, embedder) as index:  # first indexed with the ImageNet model
        process_library(index, progress=False)
    settings = updated(settings, features={"model": str(out)})
    fine_tuned = Embedder.from_settings(settings)
    assert fine_tuned.model_name.startswith("animeback-v1-") and fine_tuned.dim == 256
    with Index(settings, fine_tuned) as index:
        with pytest.raises(IndexMismatchError, match="process --reindex"):
            Searcher(index)
        process_library(index, reindex=True, progress=False)
        assert index.indexed_model() == fine_tuned.model_name
        frame = grab_frame(videos / "ep32.mp4", 7.0, tmp_path / "q.png")
        from animeback.query.decode import decode_query_image

        rgb = decode_query_image(frame.read_bytes(), 1 << 24, 1 << 24, 16)
        searcher = Searcher(index)
        top = searcher.search(rgb).matches[0]
        assert top.filename == "ep32.mp4" and abs(top.at - 7.0) <= 1.0
        # A card that does not give the model's false-match threshold: search reads scenes as for the default model.
        assert searcher.doubtful_similarity == pytest.approx(DEFAULT_FALSE_MATCH_THRESHOLD - DOUBTFUL_BELOW_THRESHOLD)
        vectors = fine_tuned.embed(np.stack([np.zeros((224, 224, 3), np.uint8) + 90]))
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    card = json.loads((out / CARD_NAME).read_text())
    (out / CARD_NAME).write_text(json.dumps({**card, "false_match_threshold": 0.6}))
    try:
        with Index(settings, Embedder.from_settings(settings)) as index:  # the same weights, so the same index
            searcher = Searcher(index)
            assert searcher.refine_min_similarity == pytest.approx(0.6 - REFINE_MIN_BELOW_THRESHOLD)
            assert searcher.doubtful_similarity == pytest.approx(0.6 - DOUBTFUL_BELOW_THRESHOLD)
            assert searcher.search(rgb).matches[0].filename == "ep32.mp4"
    finally:
        (out / CARD_NAME).write_text(json.dumps(card))
