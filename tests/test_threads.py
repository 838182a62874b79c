"""The CNN's thread count: `features.threads` for the commands, `server.cnn_threads` for each web worker, both
applied before TensorFlow's runtime makes its thread pools (a fresh process each: this one's runtime runs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT

PROBE = """
import json, sys
from animeback.config import load_settings
{load}
import tensorflow as tf
threading = tf.config.threading
print(json.dumps([threading.get_intra_op_parallelism_threads(), threading.get_inter_op_parallelism_threads()]))
"""


def _threads(tmp_path, load: str, **environ: str) -> list[int]:
    """TensorFlow's (intra-op, inter-op) threads in a fresh process after `load` ran there."""
    config = tmp_path / "config.json"
    (tmp_path / "library").mkdir(exist_ok=True)
    config.write_text(json.dumps({"library_dir": str(tmp_path / "library"), "data_dir": str(tmp_path / "data")}))
    env = {**os.environ, "ANIMEBACK_CONFIG": str(config), "TF_CPP_MIN_LOG_LEVEL": "3", **environ}
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(load=load)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.splitlines()[-1])


def test_features_threads_size_the_cnn_of_the_commands(tmp_path):
    load = "from animeback.model.embedder import Embedder\nEmbedder.from_settings(load_settings())"
    assert _threads(tmp_path, load, ANIMEBACK_FEATURES__THREADS="3") == [3, 3]


def test_each_web_worker_runs_its_cnn_on_server_cnn_threads(tmp_path):
    load = "from animeback.web.services import Services\nServices(load_settings()).index.embedder"
    assert _threads(tmp_path, load) == [1, 1]  # the default
    assert _threads(tmp_path, load, ANIMEBACK_SERVER__CNN_THREADS="2", ANIMEBACK_FEATURES__THREADS="3") == [2, 2]
