"""Binary codes of vectors: the sign of each coordinate after a fixed rotation, compared by Hamming distance.

The rotation spreads the PCA vectors' variance, which falls off along their first coordinates, evenly over every
bit (a random-sign Walsh-Hadamard matrix, orthogonal). It is built from fixed integers, not stored: every
installation and every version makes the same codes of the same vectors.
"""

from __future__ import annotations

import functools
import math
import random

import numpy as np

ROTATION_SEED = 20261203  # the signs of the rotation's columns; a change makes every stored code meaningless


def code_bits(dim: int) -> int:
    """Bits of a dim-dimensional vector's code: dim rounded up to a power of two (at least 8)."""
    return max(8, 1 << (dim - 1).bit_length())


@functools.cache
def _rotation(dim: int) -> np.ndarray:
    bits = code_bits(dim)
    hadamard = np.ones((1, 1), dtype=np.float32)
    while len(hadamard) < bits:
        hadamard = np.block([[hadamard, hadamard], [hadamard, -hadamard]])
    signs = random.Random(ROTATION_SEED)
    flips = np.array([1.0 if signs.getrandbits(1) else -1.0 for _ in range(bits)], dtype=np.float32)
    # columns beyond dim meet the zero padding of the vectors, so the rotation is orthogonal on the vectors' space
    return (hadamard * flips[None, :])[:, :dim] / np.float32(math.sqrt(bits))


def binary_codes(vectors: np.ndarray) -> np.ndarray:
    """Packed codes (uint8, code_bits / 8 bytes a row) of a batch of vectors."""
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    return np.packbits(vectors @ _rotation(vectors.shape[1]).T > 0, axis=1)


def code_similarity(hamming: float, bits: int) -> float:
    """The cosine of two unit vectors estimated from their codes' Hamming distance (each bit is a random
    hyperplane's side, so the share of differing bits is their angle over pi)."""
    return math.cos(math.pi * min(max(hamming / bits, 0.0), 1.0))
