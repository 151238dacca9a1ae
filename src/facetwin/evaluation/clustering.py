"""How well a clustering of faces matches the true people: BCubed (Bagga & Baldwin 1998) and pairwise F1.

Noise (label ``-1``) counts as a cluster of its own per face: a face left alone is right for a person seen once and
a miss for everyone else. Both scores come from the contingency table of (cluster, person), never from pairs.
"""

from __future__ import annotations

import numpy as np


def _singletons(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels, dtype=np.int64).copy()
    noise = labels < 0
    labels[noise] = labels.max(initial=0) + 1 + np.arange(noise.sum())
    return labels


def _table(pred: np.ndarray, truth) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per face: size of its cluster, of its person, of their overlap; and the overlap and size counts."""
    pred = _singletons(pred)
    truth = np.unique(np.asarray(truth), return_inverse=True)[1].reshape(-1)
    _, p_inv, p_count = np.unique(pred, return_inverse=True, return_counts=True)
    _, t_count = np.unique(truth, return_counts=True)
    _, cell_inv, cell_count = np.unique(p_inv.reshape(-1) * (truth.max() + 1) + truth, return_inverse=True,
                                        return_counts=True)
    return p_count[p_inv.reshape(-1)], t_count[truth], cell_count[cell_inv.reshape(-1)], cell_count, p_count


def bcubed(pred: np.ndarray, truth) -> dict:
    """BCubed precision, recall and F1 of cluster labels ``pred`` against person labels ``truth``."""
    cluster_size, person_size, overlap, _, _ = _table(pred, truth)
    p = float(np.mean(overlap / cluster_size))
    r = float(np.mean(overlap / person_size))
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def pairwise(pred: np.ndarray, truth) -> dict:
    """Pairwise precision, recall and F1: over all pairs of faces, "same cluster" against "same person"."""
    _, person_size, _, cells, cluster_counts = _table(pred, truth)
    _, t_count = np.unique(np.asarray(truth), return_counts=True)
    pairs = lambda x: float((np.asarray(x, np.float64) * (np.asarray(x, np.float64) - 1) / 2).sum())  # noqa: E731
    tp, predicted, true = pairs(cells), pairs(cluster_counts), pairs(t_count)
    p = tp / predicted if predicted else 1.0
    r = tp / true if true else 1.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}
