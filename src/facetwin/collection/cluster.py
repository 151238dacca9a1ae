"""Group the faces of a collection into people, with the model's calibrated threshold as the only scale.

:func:`cluster` is facetwin's choice, average linkage on the k-NN graph (chosen by ``benchmarks/cluster_quality.py``):
clusters merge while the mean distance over the graph's edges between them stays below the model's threshold, so
one close look-alike cannot chain two people together the way single linkage (connected components) or Chinese
whispers does. It runs as rounds of reciprocal-nearest-neighbour merges (RAC; exact for average linkage), each a few
vectorised numpy passes over the edge list: O(N·k) memory, no N×N matrix. The other methods are the baselines.
Labels are ``0..C-1`` by decreasing size, ``-1`` (noise) for clusters smaller than ``min_faces``.
"""

from __future__ import annotations

import numpy as np

from facetwin.collection.cluster_graph import Graph, K, knn_graph

NOISE = -1
MIN_FACES = 2


def cluster(
    embeddings: np.ndarray, distance: str, threshold: float, *, min_faces: int = MIN_FACES, k: int = K,
    graph: Graph | None = None,
) -> np.ndarray:
    """A person label per face (``-1`` = noise): average linkage on the k-NN graph, cut at ``threshold``."""
    n = len(embeddings)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    graph = graph if graph is not None else knn_graph(embeddings, distance, k)
    i, j, d = graph.edges()
    return relabel(average_linkage(n, i, j, d, threshold), min_faces)


def update(
    embeddings: np.ndarray, distance: str, threshold: float, seeds: np.ndarray, next_id: int, *,
    min_faces: int = MIN_FACES, k: int = K,
) -> np.ndarray:
    """Labels for a collection that was clustered before: ``seeds`` holds each face's cluster id (``-1`` for new
    or noise faces). Existing clusters keep their ids, never merge with each other, and absorb the new faces that
    match them; the rest cluster among themselves into new ids from ``next_id`` (by decreasing size)."""
    seeds = np.asarray(seeds, np.int64)
    if len(seeds) == 0:
        return seeds.copy()
    i, j, d = knn_graph(embeddings, distance, k).edges()
    rep = average_linkage(len(seeds), i, j, d, threshold, seeds=seeds)
    seed_of_rep = np.full(len(seeds), NOISE, dtype=np.int64)
    seed_of_rep[rep[seeds >= 0]] = seeds[seeds >= 0]
    labels = seed_of_rep[rep]
    fresh = labels == NOISE
    new = relabel(rep[fresh], min_faces)
    labels[fresh] = np.where(new >= 0, new + next_id, NOISE)
    return labels


def relabel(labels: np.ndarray, min_faces: int = MIN_FACES) -> np.ndarray:
    """Labels ``0..C-1`` by decreasing cluster size (ties: first face), ``-1`` for clusters below ``min_faces``."""
    labels = np.asarray(labels)
    uniq, first, inverse, counts = np.unique(labels, return_index=True, return_inverse=True, return_counts=True)
    valid = (counts >= max(1, min_faces)) & (uniq != NOISE)
    order = np.lexsort((first, -counts))
    new = np.full(len(uniq), NOISE, dtype=np.int64)
    ranked = order[valid[order]]
    new[ranked] = np.arange(len(ranked))
    return new[inverse.reshape(-1)]


def average_linkage(
    n: int, i: np.ndarray, j: np.ndarray, d: np.ndarray, threshold: float, *, seeds: np.ndarray | None = None
) -> np.ndarray:
    """Average-linkage agglomeration over graph edges ``(i, j, d)``, merging while the linkage is < ``threshold``.

    The linkage of two clusters is the mean distance of the graph edges between them. Each round merges every
    pair of clusters that are each other's nearest (reciprocal nearest neighbours), which yields the same
    hierarchy as merging the closest pair one at a time, in a few rounds instead of N steps. ``seeds`` (one per
    face, ``-1`` = free) are existing clusters: they start merged, may absorb free faces and new clusters, and
    never merge with each other. Returns a representative face per face (seeded faces: one of their seed).
    """
    root = np.arange(n, dtype=np.int64)
    locked = np.zeros(n, dtype=bool)
    if seeds is not None:
        root, locked = _seed(np.asarray(seeds, np.int64))
    a, b = root[np.asarray(i, np.int64)], root[np.asarray(j, np.int64)]
    s, c = np.asarray(d, np.float64), np.ones(len(a), dtype=np.float64)
    keep = a != b
    a, b, s, c = _aggregate(n, a[keep], b[keep], s[keep], c[keep])
    while len(a):
        link = s / c
        near = (link < threshold) & ~(locked[a] & locked[b])
        if not near.any():
            break
        na, nb, nl = a[near], b[near], link[near]
        ends, other = np.concatenate([na, nb]), np.concatenate([nb, na])
        order = np.lexsort((other, np.concatenate([nl, nl]), ends))
        ends, other = ends[order], other[order]
        head = np.ones(len(ends), dtype=bool)
        head[1:] = ends[1:] != ends[:-1]
        best = np.full(n, -1, dtype=np.int64)
        best[ends[head]] = other[head]
        mutual = (best[na] == nb) & (best[nb] == na)
        winner, loser = na[mutual], nb[mutual]
        swap = locked[loser]  # a seed always survives (two seeds never meet here)
        winner[swap], loser[swap] = loser[swap], winner[swap]
        root[loser] = winner
        locked[winner] |= locked[loser]
        a, b = root[a], root[b]
        keep = a != b
        a, b, s, c = _aggregate(n, a[keep], b[keep], s[keep], c[keep])
    return _flatten(root)


def _aggregate(n, a, b, s, c):
    """Edges between the same two clusters summed into one (sum of distances, count), ``a < b``."""
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    key = lo * n + hi
    uniq, inverse = np.unique(key, return_inverse=True)
    return uniq // n, uniq % n, np.bincount(inverse, weights=s), np.bincount(inverse, weights=c)


def _seed(seeds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Parent pointers that put the faces of each seed under its first face, and which roots are seeds."""
    n = len(seeds)
    root = np.arange(n, dtype=np.int64)
    locked = np.zeros(n, dtype=bool)
    seeded = np.flatnonzero(seeds >= 0)
    if len(seeded):
        uniq, first = np.unique(seeds[seeded], return_index=True)
        heads = seeded[first]
        root[seeded] = heads[np.searchsorted(uniq, seeds[seeded])]
        locked[heads] = True
    return root, locked


def _flatten(root: np.ndarray) -> np.ndarray:
    """Follow parent pointers to each face's final cluster."""
    while True:
        nxt = root[root]
        if np.array_equal(nxt, root):
            return root
        root = nxt


def components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Connected components (single linkage) of the graph with edges ``(i, j)``."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def chinese_whispers(n: int, i: np.ndarray, j: np.ndarray, *, iterations: int = 100, seed: int = 0) -> np.ndarray:
    """Chinese whispers (Biemann 2006) on unweighted edges, as dlib's ``chinese_whispers_clustering`` runs it."""
    order = np.argsort(np.concatenate([i, j]), kind="stable")
    nbrs = np.concatenate([j, i])[order]
    starts = np.searchsorted(np.concatenate([i, j])[order], np.arange(n + 1))
    labels = np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    for _ in range(iterations):
        changed = 0
        for node in rng.permutation(n):
            lo, hi = starts[node], starts[node + 1]
            if lo == hi:
                continue
            values, votes = np.unique(labels[nbrs[lo:hi]], return_counts=True)
            best = values[np.argmax(votes)]
            if best != labels[node]:
                labels[node] = best
                changed += 1
        if not changed:
            break
    return labels
