"""Seeded randomness: every random choice of the library derives its seed from SHA-256, nothing else.

A random stream is named by its *parts* (the build seed, then what it is for: a region, a fold, ...).
The parts are joined with ``":"`` (``str()`` of each) and hashed with SHA-256, so the same parts give the
same stream on every machine and in every process (never Python's ``hash()``, which is salted per
process), and different parts give independent streams.

* :func:`generator`: a NumPy ``Generator`` seeded with the first 8 bytes of the digest (big-endian);
* :func:`derive_seed`: the same 64 bits shifted right by one (a 63-bit non-negative int, which torch,
  scikit-learn and NumPy all accept as a seed);
* :func:`rank`: the hex digest itself, a seeded sort key (order items by ``rank(seed, "uda", item)``).
"""
from __future__ import annotations

import hashlib
from typing import Any

import numpy as np


def digest(*parts: Any) -> bytes:
    """SHA-256 of ``":".join(str(p) for p in parts)`` (UTF-8)."""
    return hashlib.sha256(":".join(str(p) for p in parts).encode("utf-8")).digest()


def seed64(*parts: Any) -> int:
    """The first 8 bytes of :func:`digest` as an unsigned big-endian integer (0 <= seed < 2**64)."""
    return int.from_bytes(digest(*parts)[:8], "big")


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed (``seed64(...) >> 1``), stable across processes and machines."""
    return seed64(*parts) >> 1


def generator(*parts: Any) -> np.random.Generator:
    """``numpy.random.default_rng(seed64(*parts))``."""
    return np.random.default_rng(seed64(*parts))


def rank(*parts: Any) -> str:
    """The hex SHA-256 of the parts: a seeded, reproducible sort key."""
    return digest(*parts).hex()
