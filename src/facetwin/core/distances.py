"""Distances between embeddings (smaller = more alike), in numpy: cosine and the paper's Euclidean.

- cosine: ``1 - cos(a, b)``, in [0, 2];
- euclidean: ``sqrt(max(sum((a - b)^2), 1e-7))``, the paper's Keras formula (epsilon 1e-7).

The Siamese network's training graph uses the same Euclidean formula in torch (``training/siamese.py``).
"""

from __future__ import annotations

import numpy as np

EUCLIDEAN_EPS = 1e-7  # Keras' epsilon in the paper's sqrt(max(sum((a-b)^2), eps))
DISTANCES = ("cosine", "euclidean")


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), float32."""
    v = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def paired(a: np.ndarray, b: np.ndarray, kind: str) -> np.ndarray:
    """Distance ``(N,)`` between row ``i`` of ``a`` and row ``i`` of ``b``."""
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(b, dtype=np.float64))
    if kind == "cosine":
        cos = (a * b).sum(axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
        return np.maximum(1.0 - cos, 0.0)  # rounding can make cos(a, a) a hair above 1: no "-0.0000"
    return np.sqrt(np.maximum(((a - b) ** 2).sum(axis=1), EUCLIDEAN_EPS))


def to_query(vectors: np.ndarray, kind: str) -> np.ndarray:
    """Vectors prepared for search: unit rows for cosine (then ``1 - dot`` is the distance), as they are else."""
    v = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
    return normalize(v) if kind == "cosine" else v


def one_to_many(prepared: np.ndarray, query: np.ndarray, kind: str) -> np.ndarray:
    """Distances ``(N,)`` from one prepared query to every prepared row (see :func:`to_query`)."""
    if kind == "cosine":
        return 1.0 - prepared @ query
    return np.sqrt(np.maximum(((prepared - query) ** 2).sum(axis=1), EUCLIDEAN_EPS))


def from_search_scores(scores: np.ndarray, kind: str) -> np.ndarray:
    """Distances from a FAISS index's scores: inner products (cosine) or squared L2 (euclidean)."""
    return 1.0 - scores if kind == "cosine" else np.sqrt(np.maximum(scores, EUCLIDEAN_EPS))
