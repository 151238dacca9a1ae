"""The paper's pair rule: every image gets one random same-person partner and one random other-person partner.

For images ``0..N-1`` with person labels, :func:`draw_pairs` returns index arrays ``(a, b, same)`` in the
order the paper's ``make_pairs`` loop builds them: for image ``i`` first the positive pair ``(i, p)``, then
the negative pair ``(i, n)``. The positive partner is another image of the same person (never the image
itself); a person with a single image gets no positive pair (its images still get a negative pair and
serve as negative partners of others). Drawing is vectorised and fully determined by the generator.
"""

from __future__ import annotations

import numpy as np


def epoch_rng(seed: int, epoch: int, stream: int = 0) -> np.random.Generator:
    """The generator of one epoch: the same (seed, epoch) always gives the same pairs and order."""
    return np.random.default_rng([int(seed), int(epoch), int(stream)])


def draw_pairs(labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs for images with person ``labels``: ``(a, b, same)`` int64, int64, float32 arrays."""
    labels = np.asarray(labels)
    n = len(labels)
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.float32)
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    order = np.argsort(inverse, kind="stable")  # images grouped by person
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(n, dtype=np.int64)  # position of each image inside its person's group
    rank[order] = np.arange(n) - np.repeat(starts, counts)
    count = counts[inverse]
    start = starts[inverse]

    # Positive partner: uniform among the other images of the same person.
    has_pos = count >= 2
    r = np.floor(rng.random(n) * np.maximum(count - 1, 1)).astype(np.int64)
    r = r + (r >= rank)  # skip the image itself
    pos = order[np.minimum(start + r, n - 1)]

    # Negative partner: uniform among images of other people (rejection sampling, vectorised).
    neg = rng.integers(0, n, size=n)
    if len(counts) < 2:
        raise ValueError("negative pairs need at least two people")
    bad = inverse[neg] == inverse
    while bad.any():
        neg[bad] = rng.integers(0, n, size=int(bad.sum()))
        bad = inverse[neg] == inverse

    # Interleave as the paper's loop does: (i, pos_i) then (i, neg_i); no positive for single-image people.
    a = np.repeat(np.arange(n, dtype=np.int64), 2)
    b = np.empty(2 * n, dtype=np.int64)
    b[0::2] = pos
    b[1::2] = neg
    same = np.tile(np.array([1.0, 0.0], dtype=np.float32), n)
    keep = np.ones(2 * n, dtype=bool)
    keep[0::2] = has_pos
    return a[keep], b[keep], same[keep]
