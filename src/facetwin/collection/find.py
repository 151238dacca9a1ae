"""``facetwin.find``: the photos of an index in which the person of a photo appears, best first.

The index's faces are searched through its ANN (:mod:`facetwin.collection.ann`: a FAISS index saved in
``INDEX_DIR/ann/``, extended with the faces of shards added since it was saved, never rebuilt for them). Only the
candidates near enough to matter are read back, from the faces' memory-mapped rows (:mod:`.face_rows`, made when
the finder opens the index): path, box and score, and the embedding, from which each distance is computed exactly,
so an approximate search can miss a face but never misplace one.
Faces of photos that changed since they were indexed are left out. A search sees the index as its manifest was
when the search began: shards another process commits meanwhile are searched from the next call on.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facetwin.collection.ann import Ann, open_ann
from facetwin.collection.face_rows import FaceRows
from facetwin.collection.shards import IndexStore, index_model
from facetwin.collection.verified import identity
from facetwin.core.distances import one_to_many, to_query
from facetwin.errors import FacetwinError

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
    stamp: list | None  # the manifest's version
    store: IndexStore
    ann: Ann
    rows: FaceRows
    roots: list[str]  # the manifest's photo_roots, on this machine: where the photos came from


class Finder:
    """Search one index; follows it as it grows (a new shard costs reading that shard, not the index).
    ``root``: where the archive is now (``--root``), else where the index says."""

    def __init__(self, index_dir: str | Path, model=None, *, root: str | Path | None = None):
        self.root = Path(index_dir)
        self.archive_root = root
        self.model = index_model(self.root, IndexStore(self.root, archive_root=root).model_info, model)
        self._snapshot: _Snapshot | None = None
        self._lock = threading.Lock()

    def _current(self) -> _Snapshot:
        stamp = identity(self.root / "manifest.json")  # every commit renames a new manifest into place
        with self._lock:
            if self._snapshot is not None and self._snapshot.stamp == stamp and stamp is not None:
                return self._snapshot
            store = IndexStore(self.root, archive_root=self.archive_root)
            if store.model_info.get("fingerprint") != self.model.fingerprint:
                raise FacetwinError(f"{self.root / 'manifest.json'}: the index now holds another model's faces.")
            ann = open_ann(store, self.model.distance)
            rows = FaceRows(store)
            rows.ensure()
            roots = [store.absolute(r) for r in store.manifest.get("photo_roots", [])]
            self._snapshot = _Snapshot(stamp, store, ann, rows, roots)
            return self._snapshot

    @property
    def roots(self) -> list[str]:
        """Where the index's photos came from (the folders given to ``facetwin index``, the folders of listed
        photos), on this machine."""
        return self._current().roots

    def load(self) -> int:
        """Open the index (and build or extend its ANN) now; returns the number of faces."""
        return self._current().store.faces_total()

    def find_embedding(self, vector, top_k: int = DEFAULT_TOP_K) -> tuple[list[Hit], int]:
        """Photos whose best face is within the model's threshold of ``vector``, nearest first (at most ``top_k``)."""
        snap = self._current()
        threshold = float(self.model.threshold)
        faces = snap.ann.count
        if faces == 0 or top_k < 1 or not np.isfinite(threshold):
            return [], snap.store.faces_total()
        query = to_query(np.asarray(vector, np.float32), self.model.distance)
        reach = threshold + snap.ann.margin
        k = min(faces, max(4 * top_k, 64))
        while True:
            ids, approx = snap.ann.search(query, k)
            ids, approx = ids[0], approx[0]
            near = ids[approx <= reach]
            hits = self._hits(snap, near, query[0], threshold, top_k)
            exhausted = not len(ids) or ids[-1] < 0 or approx[-1] > reach or k >= faces
            if len(hits) >= top_k or exhausted:
                return hits, snap.store.faces_total()
            k = min(faces, 4 * k)

    def _hits(self, snap: _Snapshot, face_ids: np.ndarray, query: np.ndarray, threshold: float,
              top_k: int) -> list[Hit]:
        """The photos of ``face_ids`` within ``threshold`` by their exact distance, best face of each, nearest
        first."""
        if not len(face_ids):
            return []
        details = snap.rows.read(face_ids)
        vectors = to_query(np.asarray(details["embedding"], np.float32), self.model.distance)
        exact = one_to_many(vectors, query, self.model.distance)
        hits: dict[str, Hit] = {}
        for row in np.argsort(exact, kind="stable"):
            d = float(exact[row])
            if d > threshold:
                break
            path = snap.store.absolute(details["path"][row].decode("utf-8"))
            if path not in hits:
                hits[path] = Hit(
                    path, details["sha256"][row].decode("ascii"), int(details["face"][row]), int(face_ids[row]),
                    [round(float(v), 1) for v in details["box"][row]], round(float(details["score"][row]), 4),
                    d, float(self.model.probability(d)),
                )
                if len(hits) == top_k:
                    break
        return list(hits.values())

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
        return FindResult(crop.to_dict(), hits, float(self.model.threshold), self._current().ann.name, searched)


_finders: dict[tuple[str, str | None], Finder] = {}


def find(photo, index: str | Path, *, top_k: int = DEFAULT_TOP_K, face: str | None = None,
         root: str | Path | None = None) -> FindResult:
    """The photos of ``index`` in which the person of ``photo`` appears, best first, cut at the threshold."""
    key = (str(Path(index).resolve()), None if root is None else str(root))
    finder = _finders.get(key)
    if finder is None:
        finder = _finders[key] = Finder(index, root=root)
    return finder.find(photo, top_k, face=face)


__all__ = ["Finder", "FindResult", "Hit", "find", "DEFAULT_TOP_K"]
