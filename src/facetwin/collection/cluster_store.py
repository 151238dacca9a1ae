"""The people of an index, kept beside its shards in one file: ``INDEX_DIR/clusters.parquet``.

One row per face (``face_id``, ``cluster``; ``-1`` = noise), and in the Parquet footer (key ``facetwin.clusters``)
the rest as JSON: cluster names, the next free cluster id (ids are never reused), the model fingerprint, threshold
and rule used. Names, merges and splits live in the same file, so one atomic write (temp + rename) keeps them
consistent with the assignment: a crash leaves the old file or the new one. The file is checked when read
(:func:`facetwin.collection.index_check.clusters`: ids, names by the rules of person names) and owner-only.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facetwin.collection import index_check
from facetwin.core import paths
from facetwin.errors import FacetwinError

FILE = "clusters.parquet"
FORMAT = "facetwin-clusters/1"
META_KEY = b"facetwin.clusters"


class NoCluster(FacetwinError):
    """A cluster id the table does not have."""

    def __init__(self, message: str, cluster_id: int) -> None:
        super().__init__(message)
        self.cluster_id = cluster_id


class ClustersBusy(FacetwinError):
    """The table stayed locked (a clustering run) longer than the caller would wait."""


@dataclass
class ClusterTable:
    """Cluster id per face id, names per cluster id, and what made them."""

    face_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    clusters: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    names: dict[int, str] = field(default_factory=dict)
    next_id: int = 0
    meta: dict = field(default_factory=dict)

    def lookup(self, face_ids: np.ndarray) -> np.ndarray:
        """Cluster of each of ``face_ids`` (``-1`` for faces this table does not know)."""
        out = np.full(len(face_ids), -1, dtype=np.int64)
        if len(self.face_ids):
            pos = np.searchsorted(self.face_ids, face_ids)
            pos = np.minimum(pos, len(self.face_ids) - 1)
            hit = self.face_ids[pos] == face_ids
            out[hit] = self.clusters[pos[hit]]
        return out

    def sizes(self) -> dict[int, int]:
        """Faces per cluster (noise left out), biggest first."""
        ids, counts = np.unique(self.clusters[self.clusters >= 0], return_counts=True)
        order = np.lexsort((ids, -counts))
        return {int(ids[o]): int(counts[o]) for o in order}

    def check(self, cluster_ids: int | list[int], path: Path) -> None:
        """Every one of ``cluster_ids`` is a cluster of the table (noise is not): one pass, whatever their number."""
        wanted = np.atleast_1d(np.asarray(cluster_ids, np.int64))
        missing = wanted[(wanted < 0) | ~np.isin(wanted, self.clusters)]
        if len(missing):
            raise NoCluster(f"{path}: there is no cluster {int(missing[0])} (see `facetwin cluster list "
                            f"{path.parent}`).", int(missing[0]))


@contextlib.contextmanager
def locked(root: str | Path, wait: float | None = None):
    """Hold the index folder's lock (``flock`` on the folder itself: no lock file is left in it) while reading,
    changing and saving the table, CLI and server alike; ``wait``: seconds to wait for another holder before
    :class:`ClustersBusy` (None: as long as it takes)."""
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise FacetwinError(f"{Path(root)}: cannot open the index folder ({exc.strerror or exc}).") from None
    try:
        deadline = None if wait is None else time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (fcntl.LOCK_NB if deadline is not None else 0))
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ClustersBusy(f"{Path(root)}: the clusters are being updated by another run.") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


def path_of(root: str | Path) -> Path:
    return Path(root) / FILE


def load(root: str | Path) -> ClusterTable:
    """The index's cluster table, empty when it was never clustered."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = path_of(root)
    if not path.is_file():
        return ClusterTable()
    try:
        table = pq.read_table(path)
        meta = json.loads((table.schema.metadata or {})[META_KEY])
    except (OSError, ValueError, KeyError, pa.ArrowException) as exc:
        raise FacetwinError(f"{path}: unreadable cluster table ({index_check.reason(exc)}).") from None
    names, next_id, meta = index_check.clusters(path, table, meta, FORMAT)
    order = np.argsort(table["face_id"].to_numpy(), kind="stable")
    return ClusterTable(
        table["face_id"].to_numpy()[order].astype(np.int64), table["cluster"].to_numpy()[order].astype(np.int64),
        names, next_id, meta,
    )


def save(root: str | Path, table: ClusterTable) -> None:
    """Write the table atomically (names and metadata in the same file)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    present = set(table.clusters.tolist())
    names = {str(k): v for k, v in sorted(table.names.items()) if k in present}
    meta = {**table.meta, "format": FORMAT, "next_id": int(table.next_id), "names": names,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    order = np.argsort(table.face_ids, kind="stable")
    arrow = pa.table({"face_id": pa.array(table.face_ids[order], pa.int64()),
                      "cluster": pa.array(table.clusters[order], pa.int64())})
    arrow = arrow.replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
    buffer = io.BytesIO()
    pq.write_table(arrow, buffer, compression="zstd")
    paths.atomic_write_bytes(path_of(root), buffer.getvalue(), private=True)
