"""Read a legacy (pre-1.6, non-zip) PyTorch checkpoint into numpy arrays, without torch."""

from __future__ import annotations

import io
import pickle
import struct
from collections import OrderedDict
from pathlib import Path

import numpy as np

_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ByteStorage": np.uint8,
}


class _StorageRef:
    def __init__(self, dtype, key: str, size: int):
        self.dtype, self.key, self.size = dtype, key, size
        self.data: np.ndarray | None = None


class _TensorRef:
    def __init__(self, storage: _StorageRef, offset: int, shape, stride):
        self.storage, self.offset, self.shape, self.stride = storage, offset, tuple(shape), tuple(stride)

    def to_numpy(self) -> np.ndarray:
        base = self.storage.data
        item = base.itemsize
        if not self.shape:
            return np.array(base[self.offset])
        return np.lib.stride_tricks.as_strided(
            base[self.offset :], shape=self.shape, strides=[s * item for s in self.stride]
        ).copy()


def _rebuild_tensor(storage, offset, size, stride, *_ignored):
    return _TensorRef(storage, offset, size, stride)


class _Unpickler(pickle.Unpickler):
    def __init__(self, stream, storages):
        super().__init__(stream)
        self._storages = storages

    def find_class(self, module, name):
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch" and name in _DTYPES:
            return name
        raise pickle.UnpicklingError(f"unexpected global {module}.{name} in checkpoint")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, size = pid[:5]
        if kind != "storage":
            raise pickle.UnpicklingError(f"unexpected persistent id {kind}")
        if key not in self._storages:
            self._storages[key] = _StorageRef(_DTYPES[storage_type], key, size)
        return self._storages[key]


def load_legacy_checkpoint(path: Path) -> OrderedDict[str, np.ndarray]:
    """Return the state dict of a legacy torch checkpoint as name -> numpy array."""
    with open(path, "rb") as fh:
        stream = io.BytesIO(fh.read())
    for _header in range(3):  # magic number, protocol version, system info
        pickle.load(stream)
    storages: dict[str, _StorageRef] = {}
    state = _Unpickler(stream, storages).load()
    keys = pickle.load(stream)
    for key in keys:
        ref = storages[key]
        (count,) = struct.unpack("<q", stream.read(8))
        raw = stream.read(count * np.dtype(ref.dtype).itemsize)
        ref.data = np.frombuffer(raw, dtype=ref.dtype)
    return OrderedDict((name, t.to_numpy()) for name, t in state.items())
