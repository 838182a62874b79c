"""The fine-tuned embedding: MobileNetV2's frozen trunk, its last blocks retrained, and a learned projection.

A trained model is a folder under models/ (`animeback-v<N>`) holding `model.json` (its card: version, base
weights, cut layer, dimension, how it was trained) and `head.weights.h5` (the retrained layers). The trunk's
weights are the ImageNet ones it started from, so the folder stays small.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .mobilenet import build_mobilenet_v2

CARD_NAME = "model.json"
HEAD_NAME = "head.weights.h5"
# The trunk ends after the last 160-channel block (7x7x160): what follows (block 17, the 1280-d conv, the pooling)
# is retrained, cheap enough to train on a CPU from cached trunk outputs.
CUT_LAYER = "features_16_add"
TRUNK_SHAPE = (7, 7, 160)


CARD_KEYS = ("name", "version", "dim", "cut_layer", "base", "training", "false_match_threshold")


@dataclass
class ModelCard:
    """What model.json says of a trained model."""

    name: str
    version: int
    dim: int
    cut_layer: str = CUT_LAYER
    base: str = "mobilenet_v2_imagenet"
    training: dict = field(default_factory=dict)
    # The similarity that at most 1% of screenshots of video not in the index reach with this model, as
    # benchmarks/robustness.py measured it (None: not measured; search then assumes the default model's).
    false_match_threshold: float | None = None

    def save(self, folder: Path) -> None:
        (folder / CARD_NAME).write_text(json.dumps(self.__dict__, indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> ModelCard:
        path = folder / CARD_NAME
        try:
            data = json.loads(path.read_text())
            card = cls(**{k: data[k] for k in CARD_KEYS if k in data})
            threshold = card.false_match_threshold
            if threshold is not None and not (isinstance(threshold, (int, float)) and 0 < threshold < 1):
                raise ValueError(f"false_match_threshold must be a number between 0 and 1, not {threshold!r}")
            return card
        except FileNotFoundError:
            raise ConfigError(f"no trained model at {folder} ({CARD_NAME} missing; see models/README.md)") from None
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{path}: not a valid model card ({exc})") from None


def model_fingerprint(folder: Path) -> str:
    """A short hash of a trained model's weights (part of the model name the index records)."""
    return hashlib.sha256((folder / HEAD_NAME).read_bytes()).hexdigest()[:12]


def split_mobilenet(keras, weights: Path, dim: int, cut_layer: str = CUT_LAYER):
    """(trunk, head) over ImageNet MobileNetV2: trunk = image -> cut layer; head = cut -> L2-normalised `dim`-d.

    The head reuses the base model's layers after the cut (initialised with their ImageNet weights), then a
    Dense projection; its BatchNorm layers stay frozen (inference statistics), so small batches train well."""
    base = build_mobilenet_v2(keras, with_classifier=True)
    base.load_weights(weights)
    names = [layer.name for layer in base.layers]
    after = base.layers[names.index(cut_layer) + 1 : names.index("pool") + 1]
    trunk = keras.Model(base.input, base.get_layer(cut_layer).output, name="trunk")
    inputs = keras.Input(trunk.output.shape[1:], name="trunk_features")
    x = inputs
    for layer in after:  # block 17 has no residual add: the layers after the cut form a chain
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
        x = layer(x)
    x = keras.layers.Dense(dim, name="projection")(x)
    x = keras.layers.UnitNormalization(name="l2")(x)
    head = keras.Model(inputs, x, name="head")
    return trunk, head


def init_projection(head, mean: np.ndarray, components: np.ndarray, scale: np.ndarray) -> None:
    """Start the projection as a PCA (x - mean) @ C.T / s, so training starts from the untrained pipeline."""
    kernel = (components.T / scale).astype("float32")
    head.get_layer("projection").set_weights([kernel, (-(mean @ kernel)).astype("float32")])


def trained_model_card(folder: Path) -> ModelCard:
    """The card of a finished trained model folder (raises ConfigError when the folder is not one)."""
    card = ModelCard.load(folder)
    if not (folder / HEAD_NAME).exists():
        raise ConfigError(f"{folder}: {HEAD_NAME} missing (an unfinished `python run.py train`?)")
    return card


def load_trained(keras, weights: Path, folder: Path):
    """The full image -> vector Keras model of a trained model folder, and its card."""
    card = trained_model_card(folder)
    trunk, head = split_mobilenet(keras, weights, card.dim, card.cut_layer)
    try:
        head.load_weights(folder / HEAD_NAME)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load {folder / HEAD_NAME}: {exc}") from None
    return keras.Model(trunk.input, head(trunk.output), name=f"{card.name}-v{card.version}"), card
