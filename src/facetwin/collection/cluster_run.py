"""One ``facetwin cluster`` run over an index: every face the first time (and with ``--fresh``); afterwards only the
faces added since, from their own neighbours, so its cost follows what was added, not the size of the index.

- **Full** (first run, ``--fresh``, a format 1 table, another model): the k-NN graph of every face
  (:func:`facetwin.collection.cluster_graph.knn_graph`) and average linkage around the clusters that stay (every
  existing one, or with ``--fresh`` only the named ones); the graph is saved for later runs.
- **Incremental**: the new faces (ids from the table's ``through``) are searched in the index's ANN
  (:mod:`facetwin.collection.ann`, which ``find`` keeps up to date) for their k nearest faces; the earlier noise
  faces among those neighbours are freed again with their saved neighbour lists; every existing cluster they reach
  enters as one node of its size and radius sum (:func:`facetwin.collection.cluster.extend`). New faces join the
  cluster they match or form new ones; existing clusters never merge, so names, merges and splits stay as they are.
  Faces of photos that changed since are dropped from the table.

A run writes its graph file, then the table (atomically): killed at any point, the old table stands.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pyarrow as pa

from facetwin.collection import cluster_store as tables
from facetwin.collection.ann import open_ann
from facetwin.collection.cluster import MERGE_PROBABILITY, NOISE, extend, merge_distance, update
from facetwin.collection.cluster_graph import Graph, K, knn_graph
from facetwin.collection.index_check import matrix
from facetwin.collection.shards import IndexStore, index_model
from facetwin.core.distances import to_query
from facetwin.errors import FacetwinError

METHOD = "average linkage on the k-NN graph, cut where the model's calibrated P(same) is 0.97"


def scale(model: dict, root: Path) -> tuple[str, float, float]:
    """The index model's distance, threshold and merge distance (from its calibration: the manifest's ``slope``
    and ``intercept`` when it records them, else the model loaded from its ``source``)."""
    if model.get("distance") not in ("cosine", "euclidean") or not isinstance(model.get("threshold"), int | float):
        raise FacetwinError(f"{root / 'manifest.json'}: the manifest names no model distance and threshold.")
    slope, intercept = model.get("slope"), model.get("intercept")
    if slope is None or intercept is None:
        slope, intercept = _calibration(str(root), str(model.get("source") or ""), str(model.get("fingerprint")))
    threshold = float(model["threshold"])
    return model["distance"], threshold, merge_distance(threshold, slope, intercept)


@functools.lru_cache(maxsize=8)
def _calibration(root: str, source: str, fingerprint: str) -> tuple[float | None, float | None]:
    """Logistic calibration of the model that made the index (None, None when it cannot be loaded here)."""
    try:
        loaded = index_model(root, {"source": source, "fingerprint": fingerprint})
    except FacetwinError:
        return None, None
    return loaded.slope, loaded.intercept


def run(root: str | Path, *, min_faces: int, fresh: bool) -> dict:
    """Cluster the index at ``root`` (the caller holds the clusters lock); saves the table and returns what changed:
    ``new_faces``, ``joined`` (faces that joined existing clusters), ``new_clusters`` and ``mode``."""
    root = Path(root)
    index = IndexStore(root)
    distance, threshold, cut = scale(index.model_info, root)
    old = tables.load(root)
    fingerprint = index.model_info.get("fingerprint")
    if old.meta.get("model_fingerprint") not in (None, fingerprint):
        fresh = True  # the index was rebuilt with another model: the old assignment means nothing, names do
    meta = {"model_fingerprint": fingerprint, "distance": distance, "threshold": threshold, "merge_distance": cut,
            "merge_probability": MERGE_PROBABILITY, "method": METHOD, "min_faces": min_faces, "k": K,
            "through": index.next_face_id}
    full = fresh or not old.incremental or old.meta.get("k") != K
    if full:
        table, changes = _full(root, index, old, fresh, distance, cut, min_faces, meta)
    else:
        table, changes = _incremental(root, index, old, distance, cut, min_faces, meta)
    tables.save(root, table)
    tables.prune_graphs(root, table.meta["graphs"])
    return {**changes, "mode": "fresh" if fresh else "full" if full else "incremental"}


def _full(root: Path, index: IndexStore, old: tables.ClusterTable, fresh: bool, distance: str, cut: float,
          min_faces: int, meta: dict) -> tuple[tables.ClusterTable, dict]:
    """Every face clustered again around the clusters that stay (all, or with ``fresh`` the named ones)."""
    faces = index.read_faces(["embedding"])
    face_ids = faces["face_id"].to_numpy()
    vectors = matrix(faces, "embedding")
    seeds = old.lookup(face_ids)
    if fresh:
        seeds[~np.isin(seeds, list(old.names))] = NOISE
    graph = knn_graph(vectors, distance, K) if len(face_ids) else Graph(np.zeros((0, K), np.int64),
                                                                         np.zeros((0, K), np.float32))
    labels = update(vectors, distance, cut, seeds, old.next_id, min_faces=min_faces, graph=graph)
    neighbors = np.where(graph.neighbors >= 0, face_ids[np.maximum(graph.neighbors, 0)], -1)
    distances = np.where(graph.neighbors >= 0, graph.distances, 0).astype(np.float32)
    name = tables.save_graph(root, face_ids, neighbors, distances)
    table = tables.ClusterTable(face_ids, labels, dict(old.names), max(old.next_id, int(labels.max(initial=-1)) + 1),
                                {**meta, "graphs": [name]}, graph.radius().astype(np.float32))
    return table, _changes(old, seeds, face_ids, labels)


def _incremental(root: Path, index: IndexStore, old: tables.ClusterTable, distance: str, cut: float, min_faces: int,
                 meta: dict) -> tuple[tables.ClusterTable, dict]:
    """The faces added since ``old`` was saved, joined to it from their own neighbours."""
    through = int(old.meta["through"])
    kept = ~index.retired_mask(old.face_ids)
    face_ids, labels, radius = old.face_ids[kept], old.clusters[kept].copy(), old.radius[kept].copy()
    new = index.read_faces(["embedding"], [s for s in index.shards if s.end > through])
    new = new.filter(pa.array(new["face_id"].to_numpy() >= through))
    new_ids, graphs = new["face_id"].to_numpy(), list(old.meta["graphs"])
    joined = new_clusters = 0
    if len(new_ids):
        neighbors, distances = _neighbours(index, to_query(matrix(new, "embedding"), distance), new_ids, distance)
        new_radius = Graph(neighbors, np.where(neighbors >= 0, distances, np.inf)).radius()
        at, known = _positions(face_ids, neighbors.reshape(-1))
        noise = known & (labels[at] == NOISE)
        free_old = np.unique(neighbors.reshape(-1)[noise])
        old_neighbors, old_distances = tables.read_graph(root, graphs, free_old, K)
        free = np.concatenate([new_ids, free_old])
        at = _positions(face_ids, free_old)[0]
        free_labels = _join(free, np.concatenate([neighbors, old_neighbors]),
                            np.concatenate([distances, old_distances]), np.concatenate([new_radius, radius[at]]),
                            face_ids, labels, radius, cut, old.next_id, min_faces)
        labels[at] = free_labels[len(new_ids):]
        joined = int(((free_labels >= 0) & (free_labels < old.next_id)).sum())
        new_clusters = len(set(free_labels[free_labels >= old.next_id].tolist()))
        graphs.append(tables.save_graph(root, new_ids, neighbors, distances))
        face_ids = np.concatenate([face_ids, new_ids])
        labels = np.concatenate([labels, free_labels[: len(new_ids)]])
        radius = np.concatenate([radius, new_radius.astype(np.float32)])
    next_id = max(old.next_id, int(labels.max(initial=-1)) + 1)
    table = tables.ClusterTable(face_ids, labels, dict(old.names), next_id, {**meta, "graphs": graphs}, radius)
    return table, {"new_faces": len(new_ids), "joined": joined, "new_clusters": new_clusters}


def _neighbours(index: IndexStore, queries: np.ndarray, own: np.ndarray, distance: str) -> tuple[np.ndarray, ...]:
    """The ``K`` nearest current faces of each query (itself left out), from the index's ANN: face ids (-1 where
    fewer) and distances (0 there)."""
    ids, dists = open_ann(index, distance).search(queries, K + 1)
    mine = ids == own[:, None]
    mine[~mine.any(axis=1), -1] = True  # drop itself, or the farthest when it was not found
    ids = ids[~mine].reshape(len(ids), K)
    dists = dists[~mine].reshape(len(ids), K)
    return ids, np.where(ids >= 0, dists, 0).astype(np.float32)


def _positions(ids: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each of ``wanted`` is in the sorted ``ids`` (clipped), and whether it is there."""
    if not len(ids):
        return np.zeros(len(wanted), np.int64), np.zeros(len(wanted), bool)
    at = np.minimum(np.searchsorted(ids, wanted), len(ids) - 1)
    return at, ids[at] == wanted


def _join(free: np.ndarray, neighbors: np.ndarray, distances: np.ndarray, free_radius: np.ndarray,
          face_ids: np.ndarray, labels: np.ndarray, radius: np.ndarray, cut: float, next_id: int,
          min_faces: int) -> np.ndarray:
    """Labels of the ``free`` faces (their neighbour lists given) against the clusters of ``face_ids``."""
    src = np.repeat(free, neighbors.shape[1])
    dst, d = neighbors.reshape(-1), distances.reshape(-1)
    keep = (dst >= 0) & (dst != src)
    src, dst, d = src[keep], dst[keep], d[keep]
    lo, hi = np.minimum(src, dst), np.maximum(src, dst)  # an edge listed by both its ends counts once
    _, first = np.unique(lo * (int(hi.max(initial=0)) + 1) + hi, return_index=True)
    src, dst, d = src[first], dst[first], d[first]
    order = np.argsort(free)
    at, is_free = _positions(free[order], dst)
    node = np.where(is_free, order[at], -1)
    at, known = _positions(face_ids, dst)
    cluster_of = np.where(known & ~is_free, labels[at], NOISE)
    seeds = np.unique(cluster_of[cluster_of >= 0])
    to_seed = cluster_of >= 0
    node[to_seed] = len(free) + np.searchsorted(seeds, cluster_of[to_seed])
    src_node = order[_positions(free[order], src)[0]]
    use = node >= 0  # an edge to an earlier noise face that is not freed again is left out
    members = labels >= 0
    sizes = np.bincount(labels[members], minlength=next_id)[seeds]
    sums = np.bincount(labels[members], weights=radius[members], minlength=next_id)[seeds]
    return extend(free_radius, seeds, sizes, sums, src_node[use], node[use], d[use], cut, next_id,
                  min_faces=min_faces)


def _changes(old: tables.ClusterTable, seeds: np.ndarray, face_ids: np.ndarray, labels: np.ndarray) -> dict:
    """What a full run changed: faces new to the table, earlier noise or new faces that joined a kept cluster, new
    clusters."""
    return {"new_faces": int((~np.isin(face_ids, old.face_ids)).sum()),
            "joined": int(((seeds == NOISE) & (labels >= 0) & (labels < old.next_id)).sum()),
            "new_clusters": len(set(labels[labels >= old.next_id].tolist()))}


__all__ = ["run", "scale", "METHOD"]
