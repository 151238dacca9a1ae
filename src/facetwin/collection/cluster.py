"""Group the faces of a collection into people, with the model's calibrated threshold as the only scale.

:func:`cluster` is facetwin's choice, average linkage on the k-NN graph (chosen by ``benchmarks/cluster_quality.py``):
clusters merge while the mean distance over the graph's edges between them stays below the model's threshold, so
one close look-alike cannot chain two people together the way single linkage (connected components) or Chinese
whispers does. It runs as rounds of reciprocal-nearest-neighbour merges (RAC; exact for average linkage), each a few
vectorised numpy passes over the edge list: O(N·k) memory, no N×N matrix. The other methods are the baselines.
Labels are ``0..C-1`` by decreasing size, ``-1`` (noise) for clusters smaller than ``min_faces``. :func:`update`
clusters again around existing clusters (every face's graph); :func:`extend` adds new faces to a clustering from
their own neighbours only, each existing cluster one node of its size.
"""

from __future__ import annotations

import numpy as np

from facetwin.collection.cluster_graph import Graph, K, knn_graph

NOISE = -1
MIN_FACES = 2
# Clusters merge while the model's calibrated P(same person) of their average distance is at least this. Chosen on
# half of lfw-dev's people (benchmarks/cluster_quality.py); for sface it puts the cut at 0.82 × the threshold.
MERGE_PROBABILITY = 0.97
FALLBACK_SCALE = 0.82  # the same cut as a fraction of the threshold, for a model without a logistic calibration


def merge_distance(threshold: float, slope: float | None = None, intercept: float | None = None,
                   probability: float = MERGE_PROBABILITY) -> float:
    """The distance where the model's calibrated ``sigmoid(slope * d + intercept)`` equals ``probability``.

    The decision threshold is where that probability is 0.5 for a pair drawn with even odds; in a collection
    almost every pair is two strangers, so merging asks for far stronger evidence. Never above the threshold.
    """
    if slope is None or intercept is None or not np.isfinite(slope) or slope >= 0:
        return FALLBACK_SCALE * float(threshold)
    cut = (np.log(probability / (1 - probability)) - intercept) / slope
    return float(min(max(cut, 0.0), threshold))


def cluster(
    embeddings: np.ndarray, distance: str, cut: float, *, min_faces: int = MIN_FACES, k: int = K,
    graph: Graph | None = None,
) -> np.ndarray:
    """A person label per face (``-1`` = noise): average linkage on the k-NN graph, cut at distance ``cut``
    (:func:`merge_distance` of the model)."""
    n = len(embeddings)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    graph = graph if graph is not None else knn_graph(embeddings, distance, k)
    i, j, d = graph.edges()
    return relabel(average_linkage(n, i, j, d, cut, radius=graph.radius()), min_faces)


def update(
    embeddings: np.ndarray, distance: str, cut: float, seeds: np.ndarray, next_id: int, *,
    min_faces: int = MIN_FACES, k: int = K, graph: Graph | None = None,
) -> np.ndarray:
    """Labels for a collection that was clustered before: ``seeds`` holds each face's cluster id (``-1`` for new
    or noise faces). Existing clusters keep their ids, never merge with each other, and absorb the new faces that
    match them; the rest cluster among themselves into new ids from ``next_id`` (by decreasing size). The k-NN
    ``graph`` of every face is computed here unless given (:func:`extend` needs only the new faces')."""
    seeds = np.asarray(seeds, np.int64)
    if len(seeds) == 0:
        return seeds.copy()
    graph = graph if graph is not None else knn_graph(embeddings, distance, k)
    i, j, d = graph.edges()
    rep = average_linkage(len(seeds), i, j, d, cut, radius=graph.radius(), seeds=seeds)
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


def extend(
    free_radius: np.ndarray, seed_ids: np.ndarray, seed_size: np.ndarray, seed_rsum: np.ndarray, i: np.ndarray,
    j: np.ndarray, d: np.ndarray, cut: float, next_id: int, *, min_faces: int = MIN_FACES,
) -> np.ndarray:
    """Labels of free faces (new faces, earlier noise) added to a clustering without touching the rest of it.

    Graph nodes ``0..F-1`` are the free faces (``free_radius``: each one's k-th neighbour distance), nodes
    ``F..F+S-1`` the existing clusters ``seed_ids`` their edges ``(i, j, d)`` reach, each as one node of
    ``seed_size`` faces whose radii sum to ``seed_rsum`` (so the linkage is computed over whole clusters). Free faces
    join the cluster they match (existing clusters never merge with each other) or form new clusters among
    themselves, numbered from ``next_id`` by decreasing size; ``-1`` (noise) below ``min_faces``."""
    f = len(free_radius)
    n = f + len(seed_ids)
    seeds = np.concatenate([np.full(f, NOISE, np.int64), np.arange(len(seed_ids), dtype=np.int64)])
    radius = np.concatenate([np.asarray(free_radius, np.float64), np.asarray(seed_rsum, np.float64)])
    size = np.concatenate([np.ones(f), np.asarray(seed_size, np.float64)])
    rep = average_linkage(n, i, j, d, cut, radius=radius, seeds=seeds, size=size)[:f]
    labels = np.full(f, NOISE, dtype=np.int64)
    joined = rep >= f  # a seed always survives its merges: its node stays the representative
    labels[joined] = np.asarray(seed_ids, np.int64)[rep[joined] - f]
    new = relabel(rep[~joined], min_faces)
    labels[~joined] = np.where(new >= 0, new + next_id, NOISE)
    return labels


def average_linkage(
    n: int, i: np.ndarray, j: np.ndarray, d: np.ndarray, cut: float, *, radius: np.ndarray | None = None,
    seeds: np.ndarray | None = None, size: np.ndarray | None = None,
) -> np.ndarray:
    """Average-linkage agglomeration over graph edges ``(i, j, d)``, merging while the linkage is < ``cut``.

    The linkage of two clusters is the mean distance over all pairs of their faces. The graph holds only each
    face's k nearest, so a pair without an edge is at least as far as the k-th neighbour of either face: with
    ``radius`` (that distance per face) such a pair counts as the mean of the two radii; without, the mean is over
    the graph's edges alone. Each round merges every pair of clusters that are each other's nearest (reciprocal
    nearest neighbours), a few rounds instead of N steps. ``seeds`` (one per face, ``-1`` = free) are existing
    clusters: they start merged, may absorb free faces and new clusters, and never merge with each other. ``size``
    (faces per node, default 1) lets a node stand for a whole cluster, its ``radius`` then the sum of its faces'.
    Returns a representative node per node (seeded nodes: one of their seed's nodes).
    """
    root, locked = _seed(np.asarray(seeds, np.int64)) if seeds is not None else (np.arange(n), np.zeros(n, bool))
    i, j = np.asarray(i, np.int64), np.asarray(j, np.int64)
    r = np.zeros(n) if radius is None else np.asarray(radius, np.float64)
    size = np.bincount(root, weights=None if size is None else np.asarray(size, np.float64), minlength=n)
    size = size.astype(np.float64)
    rsum = np.bincount(root, weights=r, minlength=n)
    a, b, (s, c) = _aggregate(n, root[i], root[j], [np.asarray(d, np.float64), np.ones(len(i))])
    while len(a):
        if radius is None:
            link = s / c
        else:
            far = np.maximum(rsum[a] / size[a], rsum[b] / size[b])
            link = (s + (size[a] * size[b] - c) * far) / (size[a] * size[b])
        near = (link < cut) & ~(locked[a] & locked[b])
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
        size[winner] += size[loser]
        rsum[winner] += rsum[loser]
        a, b, (s, c) = _aggregate(n, root[a], root[b], [s, c])
    return _flatten(root)


def _aggregate(n, a, b, weights):
    """Edges between the same two clusters (``a < b``, self-loops dropped) summed into one per weight array."""
    keep = a != b
    lo, hi = np.minimum(a[keep], b[keep]), np.maximum(a[keep], b[keep])
    uniq, inverse = np.unique(lo * n + hi, return_inverse=True)
    return uniq // n, uniq % n, [np.bincount(inverse, weights=w[keep], minlength=len(uniq)) for w in weights]


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
    """Connected components (single linkage) of the graph with edges ``(i, j)`` (a baseline; needs scipy)."""
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
