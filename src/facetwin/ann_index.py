"""Approximate nearest-neighbour search for large galleries: a FAISS HNSW graph kept beside the database.

HNSW (Malkov & Yashunin) answers in about a millisecond at a million vectors with recall@1 near 1 and
needs no training step, so it can be rebuilt from the database alone; the file records the gallery
generation it was built from and is rebuilt when missing or stale.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import faiss
import numpy as np

from .paths import atomic_write_text

M = 32  # graph degree
EF_CONSTRUCTION = 80
# Measured at 1M random 128-d vectors (M 32, efConstruction 80): efSearch 128 → recall@1 0.974,
# 192 → 0.994, 256 → 0.999 at 1.6 ms p50; 256 keeps a margin above the 0.99 target.
EF_SEARCH = 256


class AnnIndex:
    NAME = "faiss-hnsw"

    def __init__(self, index, ids: np.ndarray, distance: str):
        self.index = index
        self.ids = ids
        self.distance = distance
        self.name = self.NAME
        self.index.hnsw.efSearch = EF_SEARCH

    @classmethod
    def build(cls, vectors: np.ndarray, ids: np.ndarray, distance: str) -> AnnIndex:
        metric = faiss.METRIC_INNER_PRODUCT if distance == "cosine" else faiss.METRIC_L2
        index = faiss.IndexHNSWFlat(vectors.shape[1], M, metric)
        index.hnsw.efConstruction = EF_CONSTRUCTION
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        return cls(index, ids, distance)

    @classmethod
    def load_or_build(cls, gallery: Path, generation: int, ids, vectors, distance: str) -> AnnIndex:
        """The saved index if it matches ``generation``, else a fresh one (saved atomically)."""
        path = Path(f"{gallery}.hnsw")
        stamp = Path(f"{gallery}.hnsw.json")
        try:
            if json.loads(stamp.read_text()) == {"generation": generation, "count": len(ids)}:
                return cls(faiss.read_index(str(path)), ids, distance)
        except (OSError, ValueError, RuntimeError):
            pass
        built = cls.build(vectors, ids, distance)
        tmp = f"{path}.tmp{os.getpid()}"
        faiss.write_index(built.index, tmp)
        os.replace(tmp, path)
        atomic_write_text(stamp, json.dumps({"generation": generation, "count": len(ids)}))
        return built

    @property
    def ef_search(self) -> int:
        """Search depth: deeper is slower and misses the true nearest less often."""
        return self.index.hnsw.efSearch

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        self.index.hnsw.efSearch = int(value)

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Row positions and model distances of the ``k`` nearest vectors to one query."""
        scores, rows = self.index.search(np.ascontiguousarray(query, dtype=np.float32), k)
        keep = rows[0] >= 0
        rows, scores = rows[0][keep], scores[0][keep]
        distances = 1.0 - scores if self.distance == "cosine" else np.sqrt(np.maximum(scores, 1e-7))
        return rows, distances
