"""``facetwin.find``: the photos of an index in which the person of a photo appears, best first.

The index's embeddings are searched through a FAISS HNSW graph (:class:`facetwin.ann_index.AnnIndex`) built on
first use and saved beside the shards (``INDEX_DIR/faces.hnsw``); when shards were added since, only their faces
are added to it. Faces of photos that changed since they were indexed are skipped.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facetwin.collection.index_check import matrix
from facetwin.collection.shards import IndexStore, index_model
from facetwin.errors import FacetwinError
from facetwin.gallery.index import AnnIndex

DEFAULT_TOP_K = 20


@dataclass
class Hit:
    """One photo where the person appears: its best-matching face."""

    path: str
    sha256: str
    face: int
    face_id: int
    box: list[float]  # x, y, w, h in the photo's pixels
    score: float
    distance: float
    probability: float


@dataclass
class FindResult:
    query: dict  # the face used from the query photo
    hits: list[Hit]
    threshold: float
    method: str
    faces_searched: int
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


@dataclass
class _Snapshot:
    generation: tuple
    face_ids: np.ndarray
    paths: np.ndarray
    digests: np.ndarray
    faces: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    ann: AnnIndex | None
    roots: list[str]  # the manifest's photo_roots: where the photos came from


class Finder:
    """Search one index; reloads (and extends its ANN index) when the index has grown."""

    def __init__(self, index_dir: str | Path, model=None):
        self.root = Path(index_dir)
        self.model = index_model(self.root, IndexStore(self.root).model_info, model)
        self._snapshot: _Snapshot | None = None
        self._lock = threading.Lock()

    def _current(self) -> _Snapshot:
        generation = shard_names(self.root)  # shards are only ever added: their names say whether anything changed
        with self._lock:
            if self._snapshot is not None and self._snapshot.generation == generation:
                return self._snapshot
            store = IndexStore(self.root)
            generation = tuple(s.name for s in store.shards)
            table = store.read_faces(["face_id", "path", "sha256", "face", "box", "score", "embedding"])
            n = table.num_rows
            vectors = self._prepare(matrix(table, "embedding"))
            face_ids = table["face_id"].to_numpy()
            ann = None
            if n:
                ann = AnnIndex.load_or_build(
                    self.root / "faces", len(store.shards), len(store.retired), face_ids, vectors, self.model.distance
                )
            boxes = matrix(table, "box")
            self._snapshot = _Snapshot(
                generation, face_ids, table["path"].to_numpy(zero_copy_only=False),
                table["sha256"].to_numpy(zero_copy_only=False), table["face"].to_numpy(), boxes,
                table["score"].to_numpy(), ann,
                list(store.manifest.get("photo_roots", store.manifest.get("roots", []))),
            )
            return self._snapshot

    def _prepare(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.asarray(vectors, np.float32)
        if self.model.distance == "cosine":
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    @property
    def roots(self) -> list[str]:
        """Where the index's photos came from (the folders given to ``facetwin index``, the folders of listed
        photos)."""
        return self._current().roots

    def load(self) -> int:
        """Load the index (and build or extend its ANN index) now; returns the number of faces."""
        return len(self._current().face_ids)

    def find_embedding(self, vector, top_k: int = DEFAULT_TOP_K) -> tuple[list[Hit], int]:
        """Photos whose best face is within the model's threshold of ``vector``, nearest first (at most ``top_k``)."""
        snap = self._current()
        threshold = float(self.model.threshold)
        if snap.ann is None or top_k < 1:
            return [], len(snap.face_ids)
        query = self._prepare(np.asarray(vector, np.float32)[None])
        k = min(len(snap.face_ids), max(4 * top_k, 64))
        while True:
            rows, distances = snap.ann.search(query, k)
            hits: dict[str, Hit] = {}
            for row, d in zip(rows, distances, strict=True):
                if not np.isfinite(threshold) or d > threshold:
                    break
                path = str(snap.paths[row])
                if path not in hits:
                    hits[path] = Hit(
                        path, str(snap.digests[row]), int(snap.faces[row]), int(snap.face_ids[row]),
                        [round(float(v), 1) for v in snap.boxes[row]], round(float(snap.scores[row]), 4),
                        float(d), float(self.model.probability(d)),
                    )
            within = len(distances) and np.isfinite(threshold) and distances[-1] <= threshold
            if len(hits) >= top_k or not within or k >= len(snap.face_ids):
                return list(hits.values())[:top_k], len(snap.face_ids)
            k = min(len(snap.face_ids), 4 * k)

    def find(
        self, photo, top_k: int = DEFAULT_TOP_K, *, name: str | None = None, face: str | None = None
    ) -> FindResult:
        """The photos of the index in which the person of ``photo`` (its chosen face: ``face`` main or largest)
        appears."""
        if not np.isfinite(self.model.threshold):
            raise FacetwinError(f"{self.root}: the index's model has no decision threshold to cut the results at.")
        crop = self.model.face_crops(photo, no_face="error", name=name, face=face)[0]
        vector = self.model.embed_crops(crop.crop[None])[0]
        hits, searched = self.find_embedding(vector, top_k)
        ann = self._current().ann
        method = ann.name if ann is not None else "empty"
        return FindResult(crop.to_dict(), hits, float(self.model.threshold), method, searched)


def shard_names(root: Path) -> tuple[str, ...]:
    try:
        return tuple(sorted(n for n in os.listdir(root / "shards") if n.startswith("shard-")))
    except OSError:
        return ()


_finders: dict[str, Finder] = {}


def find(photo, index: str | Path, *, top_k: int = DEFAULT_TOP_K, face: str | None = None) -> FindResult:
    """The photos of ``index`` in which the person of ``photo`` appears, best first, cut at the threshold."""
    key = str(Path(index).resolve())
    finder = _finders.get(key)
    if finder is None:
        finder = _finders[key] = Finder(index)
    return finder.find(photo, top_k, face=face)


__all__ = ["Finder", "FindResult", "Hit", "find", "DEFAULT_TOP_K"]
