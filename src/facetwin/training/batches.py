"""Pairs made inside a batch (``pairs="batch"``): every training image is embedded once per epoch.

The paper's rule (``pairs.py``) embeds four images per training image and epoch (its positive and its negative
pair); with trainable trunk stages that forward and backward pass is most of the cost. Here an epoch is a sequence
of batches of people, each person with two photos where it has them (:func:`person_batches`); every image is
embedded once, and inside its batch it forms the paper's two pairs (:func:`batch_pairs`): one with the other photo
of its person, one with a random photo of another person. Same pairs, same loss (BCE on the logistic unit of the
Euclidean distance), a quarter of the trunk work. (Taking the *closest* stranger of the batch instead, the hardest
negative, made validation AUC fall from the first epoch on shifted lfw-dev with arcface-mbf: not used.)
"""

from __future__ import annotations

import numpy as np


def person_batches(labels: np.ndarray, rows: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The rows of one epoch as batches of about ``batch_size`` images: each person's photos shuffled and taken two
    at a time (a lone photo alone), those groups shuffled, then cut into batches without splitting a group."""
    rows = np.asarray(rows)
    order = rows[rng.permutation(len(rows))]
    groups: dict[object, list[int]] = {}
    for row in order:
        groups.setdefault(labels[row], []).append(int(row))
    chunks = [photos[i : i + 2] for photos in groups.values() for i in range(0, len(photos), 2)]
    batches, current = [], []
    for k in rng.permutation(len(chunks)):
        current.extend(chunks[k])
        if len(current) >= batch_size:
            batches.append(np.array(current, dtype=np.int64))
            current = []
    if current:
        batches.append(np.array(current, dtype=np.int64))
    return batches


def batch_pairs(labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(a, b, same)`` positions within a batch of images with person ``labels``: for every image with another photo
    of its person in the batch, that positive pair; for every image, a negative pair with a photo of another person
    drawn uniformly from the batch (none when the batch holds one person only)."""
    labels = np.asarray(labels)
    n = len(labels)
    same = labels[:, None] == labels[None, :]
    positive = same & ~np.eye(n, dtype=bool)
    has_positive = positive.any(axis=1)
    partner = positive.argmax(axis=1)
    scores = np.where(same, -1.0, rng.random((n, n)))  # a random stranger: the largest score off the person
    has_negative = (~same).any(axis=1)
    stranger = scores.argmax(axis=1)
    index = np.arange(n)
    a = np.concatenate([index[has_positive], index[has_negative]])
    b = np.concatenate([partner[has_positive], stranger[has_negative]])
    y = np.concatenate([np.ones(int(has_positive.sum()), np.float32), np.zeros(int(has_negative.sum()), np.float32)])
    return a, b, y


__all__ = ["batch_pairs", "person_batches"]
