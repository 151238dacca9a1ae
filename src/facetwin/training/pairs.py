"""The paper's pair rule: every image gets one random same-person partner and one random other-person partner.

For images ``0..N-1`` with person labels, :func:`draw_pairs` returns index arrays ``(a, b, same)`` in the
order the paper's ``make_pairs`` loop builds them: for image ``i`` first the positive pair ``(i, p)``, then
the negative pair ``(i, n)``. The positive partner is another image of the same person (never the image
itself); a person with a single image gets no positive pair (its images still get a negative pair and
serve as negative partners of others). Drawing is vectorised and fully determined by the generator.
:class:`PairPlan` applies the rule per epoch on top of a split (``splits.py``).
"""

from __future__ import annotations

import logging

import numpy as np

from facetwin.core.text import count
from facetwin.errors import FacetwinError
from facetwin.training.config import TrainConfig
from facetwin.training.splits import keras_split_at, split_people

log = logging.getLogger(__name__)
FEW_VALIDATION_PEOPLE = 10  # below this many validation people the epoch choice is noisy: say so


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


class PairPlan:
    """Which pairs train and validate in each epoch (split rule + pair rule)."""

    def __init__(self, labels: np.ndarray, c: TrainConfig):
        self.labels = labels
        self.c = c
        n = len(labels)
        self.val_a = self.val_b = self.val_y = None
        if c.split == "person":
            val_mask = split_people(labels, c.val_fraction, c.seed) if c.val_fraction > 0 else np.zeros(n, bool)
            self.train_idx = np.flatnonzero(~val_mask)
            self.val_idx = np.flatnonzero(val_mask)
            if len(np.unique(labels[self.train_idx])) < 2:
                raise FacetwinError("training needs at least two people outside the validation split.")
            val_people = len(np.unique(labels[self.val_idx]))
            if 0 < val_people < FEW_VALIDATION_PEOPLE and c.keep == "best":
                log.warning(
                    "only %s %s: the kept epoch and the threshold rest on their few pairs; add people or raise "
                    "--val-fraction for a steadier choice", count(val_people, "person"),
                    "validates" if val_people == 1 else "validate",
                )
            if len(self.val_idx) and val_people >= 2:
                # Several draws of the paper's rule (duplicates removed): more validation pairs, less noise in
                # the epoch choice; drawn once, so every epoch is judged on the same pairs.
                val_labels = labels[self.val_idx]
                draws = [draw_pairs(val_labels, epoch_rng(c.seed, 0, stream=1 + k)) for k in range(c.val_draws)]
                a, b, y = (np.concatenate(z) for z in zip(*draws, strict=True))
                key = np.minimum(a, b) * len(labels) + np.maximum(a, b)
                _, first = np.unique(key, return_index=True)
                first = np.sort(first)
                self.val_a, self.val_b, self.val_y = self.val_idx[a[first]], self.val_idx[b[first]], y[first]
        else:  # paper: Keras validation_split on the pair array of the (first) draw
            if len(np.unique(labels)) < 2:
                raise FacetwinError("training needs at least two people.")
            a, b, y = draw_pairs(labels, epoch_rng(c.seed, 1))
            self.split_at = keras_split_at(len(a), c.val_fraction)
            if c.val_fraction > 0:
                self.val_a, self.val_b, self.val_y = a[self.split_at :], b[self.split_at :], y[self.split_at :]
            self.first = (a[: self.split_at], b[: self.split_at], y[: self.split_at])

    def train_pairs(self, epoch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        c = self.c
        draw_epoch = 1 if c.pairs == "fixed" else epoch
        if c.split == "person":
            a, b, y = draw_pairs(self.labels[self.train_idx], epoch_rng(c.seed, draw_epoch))
            return self.train_idx[a], self.train_idx[b], y
        if draw_epoch == 1:
            return self.first
        a, b, y = draw_pairs(self.labels, epoch_rng(c.seed, draw_epoch))
        at = keras_split_at(len(a), c.val_fraction)
        return a[:at], b[:at], y[:at]

    @property
    def has_val(self) -> bool:
        return self.val_a is not None and len(self.val_a) > 0 and 0 < self.val_y.sum() < len(self.val_y)
