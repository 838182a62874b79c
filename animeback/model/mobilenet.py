"""MobileNetV2 in Keras with torchvision's layout, so that torchvision's ImageNet weights load 1:1."""

from __future__ import annotations

import numpy as np

INPUT_SIZE = 224
FEATURE_DIM = 1280
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# (expansion, output channels, repeats, first stride), as in torchvision.
_BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def _conv_bn(keras, x, prefix: str, filters: int, kernel: int, stride: int, depthwise: bool, relu: bool):
    layers = keras.layers
    if kernel > 1:  # torch pads symmetrically by 1; Keras 'same' pads asymmetrically at stride 2
        x = layers.ZeroPadding2D(1, name=f"{prefix}_pad")(x)
    if depthwise:
        x = layers.DepthwiseConv2D(kernel, strides=stride, use_bias=False, name=f"{prefix}_conv")(x)
    else:
        x = layers.Conv2D(filters, kernel, strides=stride, use_bias=False, name=f"{prefix}_conv")(x)
    x = layers.BatchNormalization(epsilon=1e-5, name=f"{prefix}_bn")(x)
    return layers.ReLU(6.0, name=f"{prefix}_relu")(x) if relu else x


def build_mobilenet_v2(keras, with_classifier: bool = False):
    """Build MobileNetV2 taking RGB 0..255 images; outputs pooled 1280-d features (and logits)."""
    layers = keras.layers
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), name="rgb")
    mean = np.array(IMAGENET_MEAN, "float32") * 255.0
    std = np.array(IMAGENET_STD, "float32") * 255.0
    x = layers.Rescaling(1.0 / std, offset=-mean / std, name="normalize")(inputs)
    x = _conv_bn(keras, x, "features_0", 32, 3, 2, False, True)
    channels, index = 32, 1
    for expansion, out_channels, repeats, first_stride in _BLOCKS:
        for r in range(repeats):
            stride = first_stride if r == 0 else 1
            prefix = f"features_{index}"
            block_in = x
            hidden = channels * expansion
            if expansion != 1:
                x = _conv_bn(keras, x, f"{prefix}_expand", hidden, 1, 1, False, True)
            x = _conv_bn(keras, x, f"{prefix}_dw", hidden, 3, stride, True, True)
            x = _conv_bn(keras, x, f"{prefix}_project", out_channels, 1, 1, False, False)
            if stride == 1 and channels == out_channels:
                x = layers.Add(name=f"{prefix}_add")([block_in, x])
            channels, index = out_channels, index + 1
    x = _conv_bn(keras, x, "features_18", FEATURE_DIM, 1, 1, False, True)
    pooled = layers.GlobalAveragePooling2D(name="pool")(x)
    if not with_classifier:
        return keras.Model(inputs, pooled, name="mobilenet_v2")
    logits = layers.Dense(1000, name="classifier")(pooled)
    return keras.Model(inputs, [pooled, logits], name="mobilenet_v2_classifier")


def torch_state_to_keras(state: dict) -> dict[str, list[np.ndarray]]:
    """Map a torchvision MobileNetV2 state dict to {keras layer name: weights}."""
    out: dict[str, list[np.ndarray]] = {}

    def conv(prefix: str, key: str, depthwise: bool):
        w = state[f"{key}.weight"]
        out[f"{prefix}_conv"] = [w.transpose(2, 3, 0, 1) if depthwise else w.transpose(2, 3, 1, 0)]

    def bn(prefix: str, key: str):
        out[f"{prefix}_bn"] = [state[f"{key}.{n}"] for n in ("weight", "bias", "running_mean", "running_var")]

    conv("features_0", "features.0.0", False)
    bn("features_0", "features.0.1")
    for index in range(1, 18):
        base = f"features.{index}.conv"
        expanded = f"{base}.3.weight" in state
        names = (["expand"] if expanded else []) + ["dw"]
        for i, name in enumerate(names):
            conv(f"features_{index}_{name}", f"{base}.{i}.0", name == "dw")
            bn(f"features_{index}_{name}", f"{base}.{i}.1")
        j = len(names)
        conv(f"features_{index}_project", f"{base}.{j}", False)
        bn(f"features_{index}_project", f"{base}.{j + 1}")
    conv("features_18", "features.18.0", False)
    bn("features_18", "features.18.1")
    out["classifier"] = [state["classifier.1.weight"].T, state["classifier.1.bias"]]
    return out
