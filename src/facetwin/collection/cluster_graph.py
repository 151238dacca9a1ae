"""The k-nearest-neighbour graph of a set of embeddings, from FAISS: never an N×N matrix.

Up to ``EXACT_BELOW`` faces the neighbours are exact (a flat index searched in blocks, BLAS); above, an inverted-file
index (FAISS IVF-Flat, ``4·√N`` lists trained on a sample, ``NPROBE`` lists searched per face) answers: building it
costs a k-means on 64 k faces instead of an HNSW graph insertion per face, and every face is queried anyway.
Distances are the model's own (cosine ``1 - cos`` or Euclidean), as :mod:`facetwin.core.distances` defines them.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

from facetwin.core.distances import from_search_scores, to_query

K = 16  # neighbours per face; edges beyond the model threshold are kept, they are evidence against a merge
EXACT_BELOW = 500_000  # 303 k synthetic faces: exact graph 238 s, BCubed F1 0.996; IVF (48 probed) 166 s, F1 0.876
BLOCK = 4096
NPROBE = 48  # benchmarks/cluster_scale.py at 1M: 16 probes → BCubed F1 0.972 (222 s CPU), 48 → 0.986 (454 s)
TRAIN_SAMPLE = 65_536


@dataclass
class Graph:
    """``neighbors[i]`` (row positions, -1 where missing) and ``distances[i]`` of face ``i``'s k nearest faces."""

    neighbors: np.ndarray  # (N, k) int64
    distances: np.ndarray  # (N, k) float32

    def radius(self) -> np.ndarray:
        """Distance of each face to its k-th neighbour (the farthest found; 2.0 when it has none)."""
        d = np.where(np.isfinite(self.distances), self.distances, -np.inf).max(axis=1)
        return np.where(np.isfinite(d), d, 2.0).astype(np.float64)

    def edges(self, cutoff: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Undirected edges ``(i, j, d)`` with ``i < j``, each once (the smaller distance if seen twice)."""
        n, k = self.neighbors.shape
        src = np.repeat(np.arange(n, dtype=np.int64), k)
        dst = self.neighbors.reshape(-1)
        dist = self.distances.reshape(-1)
        keep = (dst >= 0) & (dst != src)
        if cutoff is not None:
            keep &= dist < cutoff
        src, dst, dist = src[keep], dst[keep], dist[keep]
        lo, hi = np.minimum(src, dst), np.maximum(src, dst)
        key = lo * n + hi
        order = np.lexsort((dist, key))
        key, dist = key[order], dist[order]
        first = np.ones(len(key), dtype=bool)
        first[1:] = key[1:] != key[:-1]
        key, dist = key[first], dist[first]
        return key // n, key % n, dist


def search_index(vectors: np.ndarray, distance: str):
    """A FAISS index holding ``vectors`` (prepared): flat (exact) when few, IVF-Flat when many."""
    n, dim = vectors.shape
    metric = faiss.METRIC_INNER_PRODUCT if distance == "cosine" else faiss.METRIC_L2
    if n < EXACT_BELOW:
        index = faiss.IndexFlat(dim, metric)
    else:
        lists = int(4 * np.sqrt(n))
        index = faiss.IndexIVFFlat(faiss.IndexFlat(dim, metric), dim, lists, metric)
        sample = np.random.default_rng(0).choice(n, size=min(n, max(TRAIN_SAMPLE, 40 * lists)), replace=False)
        index.train(vectors[np.sort(sample)])
        index.nprobe = NPROBE
    index.add(vectors)
    return index


def knn_graph(vectors: np.ndarray, distance: str, k: int = K, *, query: np.ndarray | None = None) -> Graph:
    """The k nearest of ``vectors`` to each of them (itself left out), or to each row of ``query``."""
    base = to_query(vectors, distance)
    index = search_index(base, distance)
    return knn_search(index, distance, k, base if query is None else to_query(query, distance), self_=query is None)


def knn_search(index, distance: str, k: int, queries: np.ndarray, *, self_: bool = False) -> Graph:
    """Search ``queries`` (prepared) in ``index`` block by block; ``self_`` drops each query's own row."""
    n = len(queries)
    want = min(k + int(self_), index.ntotal)
    neighbors = np.full((n, k), -1, dtype=np.int64)
    dists = np.full((n, k), np.inf, dtype=np.float32)
    for start in range(0, n, BLOCK):
        scores, rows = index.search(queries[start : start + BLOCK], want)
        d = from_search_scores(scores, distance).astype(np.float32)
        d[rows < 0] = np.inf
        if self_:
            mine = rows == np.arange(start, start + len(rows))[:, None]
            # drop the query itself (or, when it is absent from its own top list, the farthest neighbour)
            mine[~mine.any(axis=1), -1] = True
            rows = rows[~mine].reshape(len(rows), want - 1)
            d = d[~mine].reshape(len(d), want - 1)
        width = min(k, rows.shape[1])
        neighbors[start : start + len(rows), :width] = rows[:, :width]
        dists[start : start + len(rows), :width] = d[:, :width]
    return Graph(neighbors, dists)
