"""Approximate nearest-neighbour search for large galleries: a FAISS HNSW graph kept beside the database.

HNSW (Malkov & Yashunin) answers in about a millisecond at a million vectors with recall@1 near 1 and
needs no training step, so it can be rebuilt from the database alone. The saved file's stamp records the
rows it holds: rows enrolled since are added to it, and it is rebuilt when missing, unreadable or when
anything was removed since (``remove`` also deletes the file, which holds copies of the embeddings). A saved file
is never trusted: its graph must be one FAISS can walk without leaving its arrays and it must hold exactly the
vectors of the database (or index) it serves, else it is rebuilt. The file and its stamp are owner-only.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path

import faiss
import numpy as np

from facetwin.core import paths
from facetwin.core.distances import from_search_scores
from facetwin.errors import FacetwinError
from facetwin.gallery.erase import remove_temporaries

M = 32  # graph degree
EF_CONSTRUCTION = 80
# benchmarks/gallery_speed.py at 1M random 128-d vectors (M 32, efConstruction 80): efSearch 128 → recall@1
# 0.972, 192 → 0.990, 256 → 0.998 at 1.66 ms p50; 256 keeps a margin above the 0.99 target.
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
    def load_or_build(
        cls, gallery: Path, generation: int, removals: int, ids, vectors, distance: str, fence=None
    ) -> AnnIndex:
        """The index for the gallery's current rows: the saved one, extended when rows were only added since it
        was saved (no removal in between), else built afresh. What changed is saved only inside ``fence()``
        (a context manager yielding whether no removal happened since ``ids`` were read), so a build that a
        removal overtook never writes the removed vectors back to disk."""
        stamp = _read_stamp(gallery)
        saved = _load_saved(gallery, stamp, removals, ids, vectors)
        grown = saved is None or saved.ntotal < len(ids)
        if saved is None:
            index = cls.build(vectors, ids, distance)
        else:
            if grown:
                saved.add(np.ascontiguousarray(vectors[saved.ntotal :], dtype=np.float32))
            index = cls(saved, ids, distance)
        if grown or stamp.get("generation") != generation:
            last_id = int(ids[-1]) if len(ids) else None
            record = {"generation": generation, "removals": removals, "count": len(ids), "last_id": last_id}
            _save(gallery, index.index if grown else None, record, fence or contextlib.nullcontext)
        return index

    @staticmethod
    def discard(gallery: Path) -> None:
        """Delete the saved index and any temporary copy being written (they hold copies of the embeddings)."""
        for file in _files(gallery):
            file.unlink(missing_ok=True)
        for prefix in (f"{gallery.name}.hnsw", f".{gallery.name}.hnsw"):
            remove_temporaries(gallery.parent, prefix)

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
        return rows, from_search_scores(scores, self.distance)


def _save(gallery: Path, index, record: dict, fence) -> None:
    """Write the index (when given) and its stamp, but only if ``fence()`` yields True; no temporary file stays."""
    path, stamp_path = _files(gallery)
    tmp = Path(f"{path}.tmp{os.getpid()}-{threading.get_ident()}")
    try:
        if index is not None:
            faiss.write_index(index, str(paths.private_file(tmp)))  # written outside the fence: it takes a while
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        with fence() as current:
            if current is False:
                return  # a removal overtook this build: its vectors must not reach the disk
            if index is not None:
                os.replace(tmp, path)  # FileNotFoundError: a removal deleted the copy meanwhile
            paths.atomic_write_text(stamp_path, json.dumps(record), private=True)
    except (OSError, RuntimeError, FacetwinError):
        return  # not saved; the next search builds it again
    finally:
        tmp.unlink(missing_ok=True)


def _files(gallery: Path) -> tuple[Path, Path]:
    return Path(f"{gallery}.hnsw"), Path(f"{gallery}.hnsw.json")


def _read_stamp(gallery: Path) -> dict:
    try:
        stamp = json.loads(_files(gallery)[1].read_text())
    except (OSError, ValueError):
        return {}
    return stamp if isinstance(stamp, dict) else {}


def _load_saved(gallery: Path, stamp: dict, removals: int, ids: np.ndarray, vectors: np.ndarray):
    """The saved FAISS index if its rows are still the first rows of ``ids`` (nothing removed since) and the
    vectors it holds are the database's (checked on a few rows: a damaged file is rebuilt), else None."""
    count = stamp.get("count")
    if stamp.get("removals") != removals or not isinstance(count, int) or not 0 < count <= len(ids):
        return None
    if stamp.get("last_id") != int(ids[count - 1]):
        return None
    path, dim = _files(gallery)[0], vectors.shape[1]
    try:
        if path.stat().st_size > count * (4 * dim + 16 * M + 64) + 2**20:
            return None  # far larger than such an index can be: not read at all
        index = faiss.read_index(str(path))
    except (OSError, RuntimeError, MemoryError):
        return None
    if not isinstance(index, faiss.IndexHNSWFlat) or index.ntotal != count or index.d != dim or not walkable(index):
        return None
    return index if np.allclose(stored_vectors(index), vectors[:count], atol=1e-6) else None


def stored_vectors(index) -> np.ndarray:
    """The vectors a FAISS flat or HNSW-flat index holds (a view, no copy)."""
    storage = faiss.downcast_index(index.storage) if isinstance(index, faiss.IndexHNSW) else index
    return _view(storage.codes).view(np.float32).reshape(index.ntotal, index.d)


def _view(vector) -> np.ndarray:
    """A FAISS vector's memory as a numpy array (no copy)."""
    return faiss.rev_swig_ptr(vector.data(), vector.size()) if vector.size() else np.zeros(0, np.int64)


def walkable(index) -> bool:
    """The loaded graph can be searched without reading outside its arrays: levels, per-node neighbour slots,
    neighbour ids, entry point and the flat storage all agree with each other (a damaged or crafted file fails)."""
    hnsw, count = index.hnsw, index.ntotal
    levels, offsets = _view(hnsw.levels), _view(hnsw.offsets).astype(np.int64)
    neighbors, cum = _view(hnsw.neighbors), _view(hnsw.cum_nneighbor_per_level)
    storage = faiss.downcast_index(index.storage)
    if len(levels) != count or len(offsets) != count + 1 or offsets[0] != 0 or offsets[-1] != len(neighbors):
        return False
    if not isinstance(storage, faiss.IndexFlat) or storage.ntotal != count or storage.d != index.d:
        return False
    if storage.codes.size() != 4 * count * index.d or not count or levels.min() < 1 or levels.max() > len(cum) - 1:
        return False
    if not np.array_equal(np.diff(offsets), cum[levels]) or neighbors.min() < -1 or neighbors.max() >= count:
        return False
    return 0 <= hnsw.entry_point < count and hnsw.max_level == levels[hnsw.entry_point] - 1 == levels.max() - 1
