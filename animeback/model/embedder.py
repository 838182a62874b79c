"""Image embeddings: a trained model (models/animeback-v<N>), or MobileNetV2 ImageNet features -> L2 -> PCA -> L2."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import Settings
from ..errors import ConfigError
from .finetune import ModelCard, trained_model_card
from .mobilenet import INPUT_SIZE

TRAINED_PCA_NAME = "pca.npz"  # a library's own PCA (`train-pca`), in the data folder
DEFAULT_PCA = "models/pca_default.npz"

log = logging.getLogger(__name__)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def import_tensorflow(threads: int = 0):
    """Import TensorFlow with its C++ start-up banner (absl/oneDNN notices on fd 2) kept off the terminal, its
    runtime using `threads` threads (0: TensorFlow's choice, one per core)."""
    import sys

    if "tensorflow" in sys.modules:
        running = sys.modules["tensorflow"]
        _use_threads(running, threads)
        return running
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            import keras  # noqa: F401  (its first import initialises the same C++ runtime)
            import tensorflow as tf

            _use_threads(tf, threads)  # before the runtime's first use, which makes its thread pools
            tf.constant(0)  # the runtime prints its notices on first use
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    return tf


def _use_threads(tf, threads: int) -> None:
    """Size TensorFlow's thread pools (0: leave TensorFlow's choice); a warning when its runtime already runs."""
    if not threads or tf.config.threading.get_intra_op_parallelism_threads() == threads:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # the pools are made once, at the runtime's first use, and never resized
        log.warning("TensorFlow already runs in this process: its CNN threads stay as they are, not %d", threads)


def single_threaded_blas() -> None:
    """Keep numpy's BLAS (OpenBLAS) to one thread in this process, for serving queries: a query's PCA
    projection is a tiny product, and after each one OpenBLAS's worker thread spins on a core for a while,
    taking it from the CNN and from the other requests (benchmarks/search_latency.py --compare-blas)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype("float32")


@dataclass(frozen=True)
class PcaModel:
    """A fitted PCA: x -> (x - mean) @ components.T, optionally whitened."""

    mean: np.ndarray
    components: np.ndarray
    scale: np.ndarray  # per-component divisor (1 without whitening)

    @property
    def dim(self) -> int:
        return int(self.components.shape[0])

    def transform(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) @ self.components.T) / self.scale

    def fingerprint(self) -> str:
        """A short hash that identifies these parameters (recorded with the index)."""
        digest = hashlib.sha256()
        for a in (self.mean, self.components, self.scale):
            digest.update(np.ascontiguousarray(a, dtype="float32").tobytes())
        return digest.hexdigest()[:12]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, mean=self.mean, components=self.components, scale=self.scale)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> PcaModel:
        try:
            with np.load(path) as data:
                return cls(
                    data["mean"].astype("float32"),
                    data["components"].astype("float32"),
                    data["scale"].astype("float32"),
                )
        except (OSError, KeyError, ValueError) as exc:
            raise ConfigError(f"cannot load PCA file {path}: {exc}") from None

    @classmethod
    def fit(cls, features: np.ndarray, dim: int, whiten: bool = False) -> PcaModel:
        """Fit on L2-normalised CNN features (rows)."""
        from sklearn.decomposition import PCA

        dim = min(dim, features.shape[0], features.shape[1])
        pca = PCA(n_components=dim, svd_solver="full", whiten=False).fit(features)
        scale = np.sqrt(pca.explained_variance_) if whiten else np.ones(dim)
        return cls(pca.mean_.astype("float32"), pca.components_.astype("float32"), scale.astype("float32"))


def pca_path(settings: Settings) -> Path:
    """The PCA in use: features.pca when set, else the library's own (train-pca), else the shipped default."""
    if settings.features.pca:
        return settings.path(settings.features.pca)
    trained = settings.data_path / TRAINED_PCA_NAME
    return trained if trained.exists() else settings.path(DEFAULT_PCA)


def check_model_files(settings: Settings) -> None:
    """Check that the configured model's files are there and readable, without loading the CNN (for `status`)."""
    f = settings.features
    weights = settings.path(f.weights)
    if not weights.exists():
        raise ConfigError(f"CNN weights not found: {weights} (see models/README.md)")
    if f.model:
        trained_model_card(settings.path(f.model))  # raises, naming the folder
    else:
        PcaModel.load(pca_path(settings))


# The similarity that at most 1% of screenshots of video not in the index reach with the ImageNet CNN and the
# shipped PCA (benchmarks/robustness.py, 0.755-0.757 in every run); a trained model's card gives its own.
DEFAULT_FALSE_MATCH_THRESHOLD = 0.755


class Embedder:
    """Turns batches of 224x224 RGB uint8 images into unit-length vectors; loads the CNN once.

    With `trained` (a folder made by `python run.py train`), vectors come from that model and `pca` is unused;
    without, from the ImageNet CNN's pooled features through `pca`."""

    def __init__(
        self, weights: Path, pca: PcaModel | None, batch_size: int = 32, threads: int = 0, trained: Path | None = None
    ):
        if not weights.exists():
            raise ConfigError(f"CNN weights not found: {weights} (see models/README.md)")
        tf = import_tensorflow(threads)
        import keras

        from .mobilenet import build_mobilenet_v2

        self.card: ModelCard | None = None
        self.pca: PcaModel | None = None
        self.model_name = ""
        trained_name = ""
        if trained is not None:
            from .finetune import load_trained, model_fingerprint

            self.model, self.card = load_trained(keras, weights, trained)
            trained_name = f"{self.card.name}-v{self.card.version}-{model_fingerprint(trained)}"
        else:
            model = build_mobilenet_v2(keras, with_classifier=True)
            model.load_weights(weights)
            self.model = keras.Model(model.input, model.get_layer("pool").output)
        self._call = tf.function(
            lambda x: self.model(x, training=False),
            reduce_retracing=True,
            input_signature=[tf.TensorSpec([None, INPUT_SIZE, INPUT_SIZE, 3], tf.float32)],
        )
        self._tf = tf
        self.batch_size = batch_size
        if self.card is not None:
            self.model_name = trained_name
        else:
            self.use_pca(pca)
        # Trace the compiled call now (about a second), so the first episode or query does not pay for it.
        self._call(tf.zeros([1, INPUT_SIZE, INPUT_SIZE, 3]))

    @classmethod
    def from_settings(cls, settings: Settings) -> Embedder:
        """The configured model: a trained one (features.model), else the ImageNet CNN with the PCA in use."""
        if settings.features.model:
            f = settings.features
            return cls(settings.path(f.weights), None, f.batch_size, f.threads, trained=settings.path(f.model))
        return cls.imagenet(settings, PcaModel.load(pca_path(settings)))

    @classmethod
    def imagenet(cls, settings: Settings, pca: PcaModel | None) -> Embedder:
        """The ImageNet CNN with the given PCA (None: the raw 1280-d features, as PCA fitting needs)."""
        f = settings.features
        return cls(settings.path(f.weights), pca, f.batch_size, f.threads)

    def use_pca(self, pca: PcaModel | None) -> None:
        """Switch the PCA stage (and so the model name the index records)."""
        if self.card is not None:
            raise ConfigError("PCA applies to the ImageNet model only; this embedder uses a trained model")
        self.pca = pca
        self.model_name = f"mobilenet_v2_imagenet+pca{pca.dim}-{pca.fingerprint()}" if pca else "mobilenet_v2_imagenet"

    @property
    def false_match_threshold(self) -> float:
        """The similarity that at most 1% of screenshots of video not in the index reach with this model (the
        default model's where a trained model's card does not say)."""
        if self.card is not None and self.card.false_match_threshold is not None:
            return self.card.false_match_threshold
        return DEFAULT_FALSE_MATCH_THRESHOLD

    @property
    def dim(self) -> int:
        if self.card is not None:
            return self.card.dim
        return self.pca.dim if self.pca else 1280

    def cnn_features(self, images: np.ndarray) -> np.ndarray:
        """L2-normalised model outputs of a stack of images, in batches (pooled CNN features, or a trained
        model's vectors)."""
        out = []
        for i in range(0, len(images), self.batch_size):
            batch = self._tf.convert_to_tensor(np.asarray(images[i : i + self.batch_size], dtype="float32"))
            out.append(self._call(batch).numpy())
        if not out:
            return np.zeros((0, self.card.dim if self.card else 1280), "float32")
        return l2_normalize(np.concatenate(out))

    def embed(self, images: np.ndarray) -> np.ndarray:
        """Final search vectors of a stack of images."""
        features = self.cnn_features(images)
        return l2_normalize(self.pca.transform(features)) if self.pca is not None else features
