"""Each shard's faces as fixed-width rows on disk, memory-mapped, so that ``find`` reads a face for a page read.

``find`` needs, for each candidate face, its embedding (for the exact distance) and, for each hit, its photo's path,
digest, face number, box and score. A Parquet shard compresses these together: one face costs its whole shard
(about 50 ms for 10 k faces), and the hits of one query lie in as many shards as there are hits.
``INDEX_DIR/rows/rows-NNNNNN.npy`` holds the same values per face as a NumPy record array, row = face id - the
shard's first. The files are a cache made from the shards (when a finder opens the index, for the shards that lack
one), used only while this user's facetwin wrote that very version of the file for that very version of its shard
(:mod:`facetwin.collection.verified`); any other is made again. Where the index folder cannot be written, the rows
are kept in memory instead.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from facetwin.collection.index_check import matrix
from facetwin.collection.records import Shard
from facetwin.collection.shards import IndexStore
from facetwin.collection.verified import identity
from facetwin.core import paths
from facetwin.errors import FacetwinError

FOLDER = "rows"
OPEN_MAX = 4096  # shards whose rows are kept mapped (a mapping costs a file handle's worth, not the rows)
IN_MEMORY_MAX = 64  # shards whose rows are kept in memory where they cannot be written to disk
COLUMNS = ["sha256", "face", "box", "score", "embedding", "path"]


def row_type(dim: int, path_bytes: int) -> np.dtype:
    """One face: its embedding, box (x, y, w, h), score, face number, photo digest and path below the archive root
    (UTF-8)."""
    return np.dtype([("embedding", "<f4", (dim,)), ("box", "<f4", (4,)), ("score", "<f4"), ("face", "<i4"),
                     ("sha256", "S64"), ("path", f"S{max(1, path_bytes)}")])


def rows_of(store: IndexStore, shard: Shard) -> np.ndarray:
    """The record array of every face of ``shard`` (retired ones too), read from the shard and its photos table."""
    table = store.fetch(np.arange(shard.first, shard.end), COLUMNS)
    names = [p.encode("utf-8") for p in table["path"].to_pylist()]
    rows = np.zeros(table.num_rows, row_type(int(store.model_info["embedding_dim"]),
                                             max((len(n) for n in names), default=1)))
    rows["embedding"], rows["box"] = matrix(table, "embedding"), matrix(table, "box")
    rows["score"], rows["face"] = table["score"].to_numpy(), table["face"].to_numpy()
    rows["sha256"] = np.asarray(table["sha256"].to_pylist(), dtype="S64")
    rows["path"] = names
    return rows


class FaceRows:
    """The rows of one opened index's shards; ``read`` answers for any face ids, ``ensure`` makes missing files."""

    def __init__(self, store: IndexStore):
        self.store = store
        self.folder = store.root / FOLDER
        self._mapped: OrderedDict[str, tuple[list, np.ndarray]] = OrderedDict()  # shard name -> (file version, rows)
        self._lock = threading.Lock()
        self._writable = True

    def _file(self, shard: Shard) -> Path:
        return self.folder / f"rows-{shard.number:06d}.npy"

    def _key(self, shard: Shard, version: list | None) -> list:
        """What the record of this user's files holds for a rows file: its version and its shard's."""
        return [version, self.store.version(shard)]

    def _trusted(self, shard: Shard, version: list | None) -> bool:
        """Whether ``version`` of ``shard``'s rows file is one this user's facetwin made for that very shard."""
        return version is not None and self.store.record.has(f"{FOLDER}/{self._file(shard).name}",
                                                             self._key(shard, version))

    def ensure(self) -> int:
        """Make the file of every shard that lacks one this user's facetwin made; returns how many were made."""
        made = 0
        for shard in self.store.shards:
            if self._writable and not self._trusted(shard, identity(self._file(shard))):
                self._rows(shard, save_record=False)
                made += 1
        self.store.record.save()
        return made

    def read(self, face_ids: np.ndarray) -> np.ndarray:
        """The rows of ``face_ids`` (retired or not), in the order given."""
        face_ids = np.asarray(face_ids, np.int64)
        where = self.store.shard_of(face_ids)
        if len(face_ids) and (where.min() < 0 or face_ids.min() < 0 or face_ids.max() >= self.store.next_face_id):
            raise FacetwinError(f"{self.store.root}: the index has no face {int(face_ids.max())}.")
        parts, order = [], []
        for k in np.unique(where):
            shard = self.store.shards[k]
            at = np.flatnonzero(where == k)
            parts.append(self._rows(shard)[face_ids[at] - shard.first])
            order.append(at)
        if not parts:
            return np.zeros(0, row_type(int(self.store.model_info["embedding_dim"]), 1))
        wide = row_type(int(self.store.model_info["embedding_dim"]), max(p.dtype["path"].itemsize for p in parts))
        joined = np.concatenate([p.astype(wide) for p in parts])
        return joined[np.argsort(np.concatenate(order), kind="stable")]

    def _rows(self, shard: Shard, save_record: bool = True) -> np.ndarray:
        """The rows of ``shard``: its mapped file while that is still the version this user's facetwin made, else
        made again from the shard (and saved, where the folder can be written; ``save_record``: the record of this
        user's files saved at once)."""
        file = self._file(shard)
        version = identity(file)
        with self._lock:
            held = self._mapped.get(shard.name)
            if held is not None and held[0] == version:
                self._mapped.move_to_end(shard.name)
                return held[1]
        rows = None
        if self._trusted(shard, version):
            rows = self._mapped_file(file, shard)
        if rows is None:
            rows = rows_of(self.store, shard)
            version = self._save(file, shard, rows)
            if version is not None:
                rows = self._mapped_file(file, shard)
        if rows is None:
            raise FacetwinError(f"{file}: the rows just written cannot be read back.")
        with self._lock:
            if save_record:
                self.store.record.save()
            self._mapped[shard.name] = (version, rows)
            limit = OPEN_MAX if version is not None else IN_MEMORY_MAX
            while len(self._mapped) > limit:
                self._mapped.popitem(last=False)
        return rows

    def _mapped_file(self, file: Path, shard: Shard) -> np.ndarray | None:
        """``file`` memory-mapped, or None when it is not the rows of ``shard`` (its length or columns)."""
        try:
            rows = np.load(file, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):
            return None
        dim = int(self.store.model_info["embedding_dim"])
        if rows.shape != (shard.faces,) or rows.dtype.names is None or \
                rows.dtype != row_type(dim, rows.dtype["path"].itemsize if "path" in rows.dtype.names else 0):
            return None
        return rows

    def _save(self, file: Path, shard: Shard, rows: np.ndarray) -> list | None:
        """Write ``rows`` as ``file`` and record its version as this user's; None when the folder cannot be written
        (the rows are then kept in memory)."""
        if not self._writable:
            return None
        try:
            paths.private_folder(self.folder)
            paths.atomic_write(file, lambda tmp: _write(tmp, rows), private=True)
        except (FacetwinError, OSError):
            self._writable = False
            return None
        version = identity(file)
        self.store.record.add(f"{FOLDER}/{file.name}", self._key(shard, version))
        return version


def _write(file: Path, rows: np.ndarray) -> None:
    with open(file, "wb") as handle:  # a handle: given a name, np.save would add ".npy" to it
        np.save(handle, rows, allow_pickle=False)


__all__ = ["FaceRows", "row_type", "rows_of", "FOLDER"]
