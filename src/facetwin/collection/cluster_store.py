"""The people of an index, kept beside its shards in one file: ``INDEX_DIR/clusters.parquet``.

One row per face (``face_id``, ``cluster``; ``-1`` = noise), and in the Parquet footer (key ``facetwin.clusters``)
the rest as JSON: cluster names, the next free cluster id (ids are never reused), the model fingerprint, threshold
and rule used. Names, merges and splits live in the same file, so one atomic write (temp + rename) keeps them
consistent with the assignment: a crash leaves the old file or the new one.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facetwin.core.paths import atomic_write_bytes
from facetwin.errors import FacetwinError

FILE = "clusters.parquet"
FORMAT = "facetwin-clusters/1"
META_KEY = b"facetwin.clusters"


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

    def check(self, cluster_id: int, path: Path) -> None:
        if cluster_id < 0 or cluster_id not in set(self.clusters.tolist()):
            raise FacetwinError(f"{path}: there is no cluster {cluster_id} (see `facetwin cluster {path.parent}`).")


@contextlib.contextmanager
def locked(root: str | Path):
    """Hold ``INDEX_DIR/.clusters.lock`` while reading, changing and saving the table (CLI and server alike)."""
    with open(Path(root) / ".clusters.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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
        raise FacetwinError(f"{path}: unreadable cluster table ({exc}).") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise FacetwinError(f"{path}: not a {FORMAT} cluster table.")
    names = {int(k): str(v) for k, v in meta.pop("names", {}).items()}
    order = np.argsort(table["face_id"].to_numpy(), kind="stable")
    return ClusterTable(
        table["face_id"].to_numpy()[order].astype(np.int64), table["cluster"].to_numpy()[order].astype(np.int64),
        names, int(meta.pop("next_id", 0)), meta,
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
    atomic_write_bytes(path_of(root), buffer.getvalue())
