"""Binary codes of vectors (the compact half-frame entries): fixed, and an estimate of the cosine."""

from __future__ import annotations

import numpy as np
import pytest

from animeback.stores.codes import _rotation, binary_codes, code_bits, code_similarity


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _hamming(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.unpackbits(np.bitwise_xor(a, b)).sum())


@pytest.mark.parametrize("dim", [256, 200, 8])
def test_the_rotation_keeps_the_vectors_lengths_and_angles(dim):
    rotation = _rotation(dim)
    assert rotation.shape == (code_bits(dim), dim) and code_bits(dim) >= dim
    assert np.allclose(rotation.T @ rotation, np.eye(dim), atol=1e-5)


def test_codes_are_the_same_in_every_process_and_their_size_is_a_bit_a_dimension():
    vectors = _unit(np.random.default_rng(1), 3, 256)
    codes = binary_codes(vectors)
    assert codes.dtype == np.uint8 and codes.shape == (3, 32)
    # built from fixed integers, pinned here: a change would make every stored code meaningless
    fixed = np.cos(np.arange(256) * 0.37).astype(np.float32)
    assert binary_codes(fixed)[0].tobytes().hex() == "8d761dcb9fa71591f255526f77b0d04933077f1085f1b73ef1c4d69d1e5eab82"
    assert np.array_equal(codes, binary_codes(vectors.copy()))


def test_the_hamming_distance_estimates_the_cosine():
    rng = np.random.default_rng(2)
    base = _unit(rng, 200, 256)
    errors = []
    for cosine in (0.95, 0.8, 0.5, 0.0):
        noise = _unit(rng, 200, 256)
        noise -= (noise * base).sum(1, keepdims=True) * base  # orthogonal to base
        noise /= np.linalg.norm(noise, axis=1, keepdims=True)
        other = cosine * base + np.sqrt(1 - cosine**2) * noise
        estimates = [code_similarity(_hamming(a, b), 256) for a, b in zip(binary_codes(base), binary_codes(other))]
        errors.append(abs(float(np.median(estimates)) - cosine))
    assert max(errors) < 0.05
    code = binary_codes(base[:1])[0]
    assert code_similarity(0, 256) == 1.0 and code_similarity(256, 256) == pytest.approx(-1.0)
    assert code_similarity(_hamming(code, binary_codes(-base[:1])[0]), 256) == pytest.approx(-1.0)
