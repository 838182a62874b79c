"""The shipped Keras weights reproduce torchvision's MobileNetV2 (reference logits made by an independent
torch implementation: scripts/port_mobilenet_weights.py --reference)."""

from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def test_keras_port_matches_torch_reference(embedder):
    import keras

    from animeback.model.mobilenet import build_mobilenet_v2
    from scripts.port_mobilenet_weights import reference_inputs

    reference = np.load(ROOT / "tests" / "data" / "mobilenet_reference.npz")
    model = build_mobilenet_v2(keras, with_classifier=True)
    model.load_weights(ROOT / "models" / "mobilenet_v2_imagenet.weights.h5")
    _pooled, logits = model.predict(reference_inputs(), verbose=0)
    assert np.abs(logits - reference["logits"]).max() < 1e-3
    assert (logits.argmax(1) == reference["logits"].argmax(1)).all()


def test_embeddings_are_unit_length_and_deterministic(embedder):
    images = np.random.default_rng(5).integers(0, 255, (3, 224, 224, 3), dtype=np.uint8)
    a, b = embedder.embed(images), embedder.embed(images[::-1])
    assert a.shape == (3, embedder.dim)
    assert np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    assert np.allclose(a, b[::-1], atol=1e-4)
