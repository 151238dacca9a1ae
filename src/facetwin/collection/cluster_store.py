"""The people of an index, kept beside its shards: ``INDEX_DIR/clusters.parquet`` and the k-NN graph in ``graph/``.

``clusters.parquet`` has one row per face clustered (``face_id``, ``cluster``, ``-1`` = noise; ``radius``: its
distance to its k-th neighbour when it was clustered), and in the Parquet footer (key ``facetwin.clusters``) the rest
as JSON: cluster names, the next free cluster id (ids are never reused), the model fingerprint, threshold and rule
used, ``through`` (every face id below it was clustered: the faces of later shards are new) and the graph files.
Each graph file ``graph/graph-FACEID-XXXXXXXX.parquet`` holds the k nearest neighbours of the faces one run added
(``face_id``, ``neighbors``, ``distances``), read back for the faces that are still noise when new faces arrive.
Names, merges and splits live in the table, and a run writes its graph file first and the table last, atomically:
a crash leaves the old table or the new one (an unnamed graph file is removed by the next run). Everything is
checked when read (:mod:`facetwin.collection.cluster_check`) and owner-only. Format 1 tables (no radius, no graph)
are read as seeds: the next run clusters every face again around them, once.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facetwin.collection import cluster_check, index_check
from facetwin.core import paths
from facetwin.errors import FacetwinError

FILE = "clusters.parquet"
FORMAT = "facetwin-clusters/2"
FORMATS = ("facetwin-clusters/1", FORMAT)
META_KEY = b"facetwin.clusters"
GRAPH_DIR = "graph"
GRAPH_ROWS = 65_536  # rows per row group of a graph file: a face's neighbours are read with its group only


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
    radius: np.ndarray | None = None  # per face; None for a format 1 table

    @property
    def incremental(self) -> bool:
        """Whether new faces can be added to it from their own neighbours (a format 2 table)."""
        return self.radius is not None and self.meta.get("format") == FORMAT

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
    names, next_id, meta = cluster_check.clusters(path, table, meta, FORMATS)
    order = np.argsort(table["face_id"].to_numpy(), kind="stable")
    radius = table["radius"].to_numpy()[order] if meta["format"] == FORMAT else None
    return ClusterTable(
        table["face_id"].to_numpy()[order].astype(np.int64), table["cluster"].to_numpy()[order].astype(np.int64),
        names, next_id, meta, radius,
    )


def save(root: str | Path, table: ClusterTable) -> None:
    """Write the table atomically (names and metadata in the same file)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    present = set(np.unique(table.clusters).tolist())
    names = {str(k): v for k, v in sorted(table.names.items()) if k in present}
    meta = {**table.meta, "format": FORMAT if table.radius is not None else FORMATS[0], "next_id": int(table.next_id),
            "names": names, "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    order = np.argsort(table.face_ids, kind="stable")
    columns = {"face_id": pa.array(table.face_ids[order], pa.int64()),
               "cluster": pa.array(table.clusters[order], pa.int64())}
    if table.radius is not None:
        columns["radius"] = pa.array(np.asarray(table.radius, np.float32)[order], pa.float32())
    arrow = pa.table(columns).replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
    buffer = io.BytesIO()
    pq.write_table(arrow, buffer, compression="zstd")
    paths.atomic_write_bytes(path_of(root), buffer.getvalue(), private=True)


def save_graph(root: str | Path, face_ids: np.ndarray, neighbors: np.ndarray, distances: np.ndarray) -> str:
    """Write the k-NN lists of ``face_ids`` (``neighbors`` as face ids, -1 where none) as a new graph file; returns
    its name. The table names it only once it is saved: until then it is not part of the index."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    order = np.argsort(face_ids, kind="stable")
    k = neighbors.shape[1]
    table = pa.table({
        "face_id": pa.array(np.asarray(face_ids, np.int64)[order]),
        "neighbors": pa.FixedSizeListArray.from_arrays(pa.array(neighbors[order].reshape(-1), pa.int64()), k),
        "distances": pa.FixedSizeListArray.from_arrays(pa.array(distances[order].reshape(-1), pa.float32()), k),
    })
    first = int(face_ids.min()) if len(face_ids) else 0
    name = f"graph-{first}-{uuid.uuid4().hex[:8]}.parquet"
    folder = paths.private_folder(Path(root) / GRAPH_DIR)
    paths.atomic_write(folder / name, lambda tmp: pq.write_table(table, tmp, compression="zstd",
                                                                  row_group_size=GRAPH_ROWS), private=True)
    return name


def read_graph(root: str | Path, names: list[str], face_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k-NN lists (neighbours, distances) of ``face_ids``, from the row groups of the graph files ``names`` that
    can hold them (checked as read); a face found in none gets no neighbours (-1)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    face_ids = np.asarray(face_ids, np.int64)
    neighbors = np.full((len(face_ids), k), -1, np.int64)
    distances = np.zeros((len(face_ids), k), np.float32)
    wanted = np.sort(face_ids)
    for name in names:
        path = Path(root) / GRAPH_DIR / name
        try:
            handle = pq.ParquetFile(path)
            groups = [g for g in range(handle.num_row_groups) if _holds(handle.metadata.row_group(g), wanted)]
            if not groups:
                continue
            table = handle.read_row_groups(groups, columns=["face_id", "neighbors", "distances"])
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise FacetwinError(f"{path}: unreadable k-NN graph file ({index_check.reason(exc)}).") from None
        cluster_check.graph(path, table, k)
        ids = table["face_id"].to_numpy()
        at = np.searchsorted(ids, face_ids)
        hit = (at < len(ids)) & (ids[np.minimum(at, len(ids) - 1)] == face_ids)
        neighbors[hit] = index_check.matrix(table, "neighbors")[at[hit]]
        distances[hit] = index_check.matrix(table, "distances")[at[hit]]
    return neighbors, distances


def _holds(group, wanted: np.ndarray) -> bool:
    """Whether a row group's face id range (its statistics; a group without them is read) holds one of ``wanted``."""
    column = group.column(0)
    stats = column.statistics if column.is_stats_set else None
    if stats is None or not stats.has_min_max:
        return True
    at = np.searchsorted(wanted, stats.min)
    return bool(at < len(wanted) and wanted[at] <= stats.max)


def prune_graphs(root: str | Path, keep: list[str]) -> None:
    """Remove the graph files the table no longer names (a killed run's, or replaced by a fresh run)."""
    folder = Path(root) / GRAPH_DIR
    for file in folder.glob("graph-*.parquet") if folder.is_dir() else []:
        if file.name not in keep:
            file.unlink(missing_ok=True)
