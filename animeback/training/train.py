"""`python run.py train`: fine-tune the embedding self-supervised on the library's frames; resumable.

Each round draws fresh distorted views (animeback/augment.py) of every anchor frame, runs them and the clean
anchors through the frozen trunk once, then trains the head (animeback/finetune.py) for a few passes. The loss
is retrieval's: each view must pick its own clean frame out of the batch, and batches are built from runs of
consecutive frames, so neighbouring frames of a shot are the hardest negatives (time localisation stays sharp).
A checkpoint after every round lets an interrupted run go on where it stopped.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..config import PROJECT_ROOT, Settings
from ..errors import AnimeBackError, MediaError
from ..imaging import is_uninformative
from ..ingest.dedupe import Deduplicator
from ..ingest.library import VIDEO_EXTENSIONS, scan_library
from ..ingest.media import Frame, open_video
from ..model.embedder import PcaModel, import_tensorflow, pca_path
from ..model.finetune import CARD_NAME, HEAD_NAME, ModelCard, init_projection, split_mobilenet
from ..model.pixels import to_model_input
from .augment import random_view

log = logging.getLogger(__name__)

MODEL_PREFIX = "animeback-v"
VERSIONED_NAME = re.compile(re.escape(MODEL_PREFIX) + r"(\d+)")
CHECKPOINT_DIR = ".train"
# Consecutive anchors kept together in a batch: the neighbouring frames each view must not be confused with.
RUN_LENGTH = 8
ANCHOR_DISTANCE = 8  # pHash bits: a frame this close to the previous anchor is not a new anchor


@dataclass
class TrainOptions:
    """Knobs of a training run (recorded in the model card)."""

    rounds: int = 20
    views: int = 3
    epochs_per_round: int = 2
    fps: float = 4.0
    frame_width: int = 448
    batch: int = 64
    learning_rate: float = 5e-5
    temperature: float = 0.05
    keep: float = 2.0  # weight of keeping clean frames' vectors near the untrained model's (its fine detail)
    seed: int = 0


def next_model_folder(models_dir: Path) -> Path:
    """The unfinished `animeback-v<N>` folder to resume, else the next free version."""
    versions = {}
    for path in models_dir.glob(f"{MODEL_PREFIX}*"):
        match = VERSIONED_NAME.fullmatch(path.name)
        if match and path.is_dir():
            versions[int(match.group(1))] = path
    for version in sorted(versions):
        if (versions[version] / CHECKPOINT_DIR).is_dir() and not (versions[version] / CARD_NAME).exists():
            return versions[version]
    return models_dir / f"{MODEL_PREFIX}{max(versions, default=0) + 1}"


def training_videos(settings: Settings, folders: list[Path]) -> list[Path]:
    """The library's episodes plus the videos in extra folders, or raise when there is nothing to train on."""
    videos = [f.path for f in scan_library(settings.library_path).files]
    for folder in folders:
        if not folder.is_dir():
            raise AnimeBackError(f"{folder}: not a folder of videos")
        videos += sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
    if not videos:
        raise AnimeBackError(
            f"no videos to train on: the library {settings.library_path} is empty and no --videos folder was given"
        )
    return videos


def collect_anchors(
    videos: list[Path], settings: Settings, options: TrainOptions, progress: bool
) -> tuple[list[np.ndarray], list[Path]]:
    """Frames (at frame_width, in video order) sampled from each video, without blank ones or near-duplicates
    of the frame before (a distorted view could not tell them apart); and the videos that could be read."""
    anchors, used = [], []
    for path in tqdm(videos, desc="reading frames", unit="video", disable=not progress):
        try:
            video = open_video(path, settings.media)
            frames = video.read_frames(options.fps, options.frame_width, settings.media.ffmpeg)
        except MediaError as exc:
            log.warning("skipping %s", exc.message)
            continue
        frames = [f for f in frames if not is_uninformative(f.pixels)]
        # The index's own near-duplicate filter, comparing each frame with the last kept one only, on the CNN input.
        dedupe = Deduplicator(max_distance=ANCHOR_DISTANCE, window=1, max_age_s=float("inf"), max_span_s=0)
        squashed = (Frame(i, f.time, to_model_input(f.pixels)) for i, f in enumerate(frames))
        anchors += [frames[kept.index].pixels for kept in dedupe.filter(squashed, video.info.duration)]
        used.append(path)
    if len(anchors) < 2 * RUN_LENGTH:
        raise AnimeBackError(
            f"only {len(anchors)} distinct frames in {len(used)} readable video(s); training "
            f"needs at least {2 * RUN_LENGTH}"
        )
    return anchors, used


def retrieval_model(keras, head, options: TrainOptions):
    """The head wrapped for training, with the retrieval loss written in backend-neutral `keras.ops`: it trains
    through Keras' own train step on TensorFlow, JAX or PyTorch alike (a lent GPU machine has no TensorFlow)."""
    ops = keras.ops

    def cross_entropy(labels, logits):
        return ops.mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))

    class RetrievalModel(keras.Model):
        def __init__(self):
            super().__init__()
            self.head = head

        def call(self, inputs, training=False):
            anchors, views = inputs
            return self.head(anchors, training=training), self.head(views, training=training)

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            a, v = y_pred
            count = ops.shape(a)[0]
            owners = ops.repeat(ops.arange(count), options.views)
            # Each view must retrieve its own clean frame among the batch's (neighbours included) ...
            loss = cross_entropy(owners, ops.matmul(v, ops.transpose(a)) / options.temperature)
            # ... and the clean frames themselves are kept apart, so near-identical neighbours stay distinct.
            loss += 0.5 * cross_entropy(ops.arange(count), ops.matmul(a, ops.transpose(a)) / options.temperature)
            # Clean frames stay near where the untrained model put them (y): the ImageNet features tell
            # neighbouring frames apart finely, and only the distortions are to be learnt.
            return loss + options.keep * ops.mean(1.0 - ops.sum(a * y, axis=1))

    model = RetrievalModel()
    model.compile(optimizer=keras.optimizers.Adam(options.learning_rate), jit_compile=False)
    return model


class Trainer:
    """The head, its optimiser and the trunk, with checkpoints in `folder/.train`."""

    def __init__(self, settings: Settings, folder: Path, options: TrainOptions, pca: PcaModel):
        if os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
            import_tensorflow()  # first, so that its start-up notices stay off the terminal
        import keras

        self.folder, self.options = folder, options
        self.trunk, self.head = split_mobilenet(keras, settings.path(settings.features.weights), pca.dim)
        init_projection(self.head, pca.mean, pca.components, pca.scale)
        self.model = retrieval_model(keras, self.head, options)
        self.optimizer = self.model.optimizer
        self.optimizer.build(self.head.trainable_variables)  # its state exists before a checkpoint is loaded

    def trunk_features(self, images: list[np.ndarray], batch: int = 32) -> np.ndarray:
        """Trunk outputs (float16, to keep a round's cache small) of 224x224 images."""
        out = []
        for i in range(0, len(images), batch):
            features = self.trunk.predict_on_batch(np.stack(images[i : i + batch]).astype("float32"))
            out.append(np.asarray(features).astype("float16"))
        return np.concatenate(out)

    def embed(self, features: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [
                np.asarray(self.head.predict_on_batch(features[i : i + 256].astype("float32")))
                for i in range(0, len(features), 256)
            ]
        )

    def train_round(
        self, anchor_feats: np.ndarray, view_feats: np.ndarray, targets: np.ndarray, rng: np.random.Generator
    ) -> float:
        """Passes over one round's views; returns the mean loss of the last pass."""
        o = self.options
        n = len(anchor_feats)
        losses: list[float] = []
        for _ in range(o.epochs_per_round):
            runs = np.arange(0, n, RUN_LENGTH)
            rng.shuffle(runs)
            order = np.concatenate([np.arange(int(s), min(int(s) + RUN_LENGTH, n)) for s in runs])
            losses = []
            for i in range(0, n, o.batch):
                idx = order[i : i + o.batch]
                if len(idx) < 2:
                    continue
                views = view_feats[idx].reshape(-1, *view_feats.shape[2:])
                inputs = (anchor_feats[idx].astype("float32"), views.astype("float32"))
                self.model.reset_metrics()  # so that the loss it returns is this batch's, not a running mean
                losses.append(float(np.asarray(self.model.train_on_batch(inputs, targets[idx]))))
        return float(np.mean(losses)) if losses else float("nan")

    def save_checkpoint(self, done_rounds: int, state: dict) -> None:
        """Head weights, optimiser state and progress, written then renamed into place."""
        ckpt = self.folder / CHECKPOINT_DIR
        ckpt.mkdir(parents=True, exist_ok=True)
        self.head.save_weights(ckpt / "head.tmp.weights.h5")
        np.savez(ckpt / "optimizer.tmp.npz", *[np.asarray(v) for v in self.optimizer.variables])
        (ckpt / "state.tmp.json").write_text(json.dumps({**state, "rounds_done": done_rounds}))
        os.replace(ckpt / "head.tmp.weights.h5", ckpt / "head.weights.h5")
        os.replace(ckpt / "optimizer.tmp.npz", ckpt / "optimizer.npz")
        os.replace(ckpt / "state.tmp.json", ckpt / "state.json")

    def load_checkpoint(self) -> dict | None:
        ckpt = self.folder / CHECKPOINT_DIR
        if not (ckpt / "state.json").exists():
            return None
        try:
            self.head.load_weights(ckpt / "head.weights.h5")
            with np.load(ckpt / "optimizer.npz") as data:
                values = [data[f"arr_{i}"] for i in range(len(data.files))]
            if len(values) != len(self.optimizer.variables):
                raise ValueError("optimizer state of another model")
            for variable, value in zip(self.optimizer.variables, values):
                variable.assign(value)
            return json.loads((ckpt / "state.json").read_text())
        except (OSError, ValueError) as exc:
            raise AnimeBackError(f"cannot resume from {ckpt} ({exc}); delete it to start over") from None


def view_top1(anchors: np.ndarray, views: np.ndarray) -> float:
    """Share of views whose nearest clean frame (of all anchors) is their own."""
    owners = np.repeat(np.arange(len(anchors)), views.shape[0] // len(anchors))
    return float(np.mean(np.argmax(views @ anchors.T, axis=1) == owners))


def train_model(
    settings: Settings,
    folders: list[Path],
    out: Path | None = None,
    options: TrainOptions | None = None,
    progress: bool = True,
) -> str:
    """Train a model on the library's (and `folders`') frames into a new models/animeback-v<N>; returns a summary."""
    options = options or TrainOptions()
    out = out or next_model_folder(settings.path("models"))
    if (out / CARD_NAME).exists():
        raise AnimeBackError(f"{out} already holds a finished model; choose another --out")
    videos = training_videos(settings, folders)
    started = time.monotonic()
    anchors, used = collect_anchors(videos, settings, options, progress)
    pca = PcaModel.load(pca_path(settings))
    trainer = Trainer(settings, out, options, pca)
    signature = {"videos": [str(v) for v in videos], "anchors": len(anchors), "options": asdict(options)}
    clean = trainer.trunk_features([to_model_input(a) for a in anchors])
    targets = trainer.embed(clean)  # the untrained model's vectors, before any checkpoint is loaded
    state = trainer.load_checkpoint()
    if state and {k: state.get(k) for k in signature} != signature:
        raise AnimeBackError(
            f"{out / CHECKPOINT_DIR} belongs to a run with other videos or options; delete it or choose another --out"
        )
    done = state["rounds_done"] if state else 0
    history = state["history"] if state else []
    if done:
        log.info("resuming %s after round %d of %d", out, done, options.rounds)
    log.info(
        "training on %d frames of %d video(s), %d rounds of %d views",
        len(anchors),
        len(used),
        options.rounds,
        options.views,
    )
    bar = tqdm(total=options.rounds, initial=done, desc="training", unit="round", disable=not progress)
    for round_number in range(done, options.rounds):
        rng = np.random.default_rng([options.seed, round_number])
        views = [to_model_input(random_view(a, rng)) for a in anchors for _ in range(options.views)]
        view_feats = trainer.trunk_features(views).reshape(len(anchors), options.views, *clean.shape[1:])
        # Fresh views, not trained on yet: an honest running measure of what the model has learnt.
        before = view_top1(trainer.embed(clean), trainer.embed(view_feats.reshape(-1, *clean.shape[1:])))
        loss = trainer.train_round(clean, view_feats, targets, rng)
        history.append({"round": round_number + 1, "loss": round(loss, 4), "fresh_view_top1": round(before, 4)})
        log.info("round %d: fresh-view top-1 %.3f before training on them, loss %.3f", round_number + 1, before, loss)
        trainer.save_checkpoint(round_number + 1, {**signature, "history": history})
        bar.set_postfix(loss=f"{loss:.3f}", top1=f"{before:.3f}")
        bar.update()
    bar.close()
    trainer.head.save_weights(out / HEAD_NAME)
    numbered = VERSIONED_NAME.fullmatch(out.name)
    version = int(numbered.group(1)) if numbered else 1
    card = ModelCard(
        name="animeback",
        version=version,
        dim=pca.dim,
        training={
            "videos": [v.name for v in used],
            "frames": len(anchors),
            "options": asdict(options),
            "history": history,
            "seconds": round(time.monotonic() - started),
            "initial_projection": pca.fingerprint(),
        },
    )
    card.save(out)
    shutil.rmtree(out / CHECKPOINT_DIR, ignore_errors=True)
    return (
        f"trained {out} on {len(anchors)} frames of {len(used)} video(s) in "
        f"{time.monotonic() - started:.0f} s; fresh-view top-1 {history[0]['fresh_view_top1']:.3f} -> "
        f'{history[-1]["fresh_view_top1"]:.3f}\nto use it: set features.model to "{_config_path(out, settings)}" '
        "in config.json and run `python run.py process --reindex`"
    )


def _config_path(folder: Path, settings: Settings) -> str:
    for base in (settings.base_dir, PROJECT_ROOT):
        try:
            return str(folder.resolve().relative_to(Path(base).resolve()))
        except ValueError:
            continue
    return str(folder)
