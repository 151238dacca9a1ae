"""The faces of a ``facetwin index`` folder as numpy arrays, for clustering and the Collection view.

Read through :class:`facetwin.collection.shards.IndexStore` (the index's own reader): ``face_id`` (dense, never
reused), ``path`` (on this machine, through the archive root), ``sha256`` and ``size`` of its photo, ``face``,
``box`` (x, y, w, h) and ``embedding``, retired faces of changed photos left out, in ``face_id`` order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facetwin.collection.index_check import matrix
from facetwin.collection.shards import IndexStore

COLUMNS = ["face_id", "path", "sha256", "size", "face", "box", "embedding"]


@dataclass
class IndexFaces:
    """Every current face of an index, in ``face_id`` order."""

    root: Path
    model: dict  # the manifest's model record
    face_ids: np.ndarray  # (N,) int64
    paths: list[str]
    digests: list[str]
    sizes: np.ndarray  # (N,) bytes of each face's photo
    faces: np.ndarray  # (N,) face number within its photo
    boxes: np.ndarray  # (N, 4) float32, x y w h in photo pixels
    embeddings: np.ndarray  # (N, D) float32
    roots: list[str]  # where its photos may be read back from (the manifest's photo_roots, on this machine)

    def __len__(self) -> int:
        return len(self.face_ids)


def read_faces(root: str | Path, *, embeddings: bool = True, archive_root: str | Path | None = None) -> IndexFaces:
    """The current faces of the index at ``root`` (retired versions of changed photos left out), as arrays;
    ``archive_root``: where the archive is now (``--root``)."""
    store = IndexStore(root, archive_root=archive_root)
    table = store.read_faces(COLUMNS if embeddings else COLUMNS[:-1])
    n, dim = table.num_rows, int(store.model_info.get("embedding_dim") or 0)
    emb = matrix(table, "embedding") if embeddings else np.zeros((n, dim), np.float32)
    return IndexFaces(
        Path(root), store.model_info, table["face_id"].to_numpy().astype(np.int64),
        [store.absolute(p) for p in table["path"].to_pylist()], table["sha256"].to_pylist(),
        table["size"].to_numpy(), table["face"].to_numpy(), matrix(table, "box").astype(np.float32), emb,
        [store.absolute(r) for r in store.manifest.get("photo_roots", [])],
    )
