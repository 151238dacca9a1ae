"""Pairs made inside a batch (``pairs="batch"``): every training image is embedded once per epoch.

The paper's rule (``pairs.py``) embeds four images per training image and epoch (its positive and its negative
pair); with trainable trunk stages that forward and backward pass is most of the cost. Here an epoch is a sequence
of batches of people, each person with two photos where it has them (:func:`person_batches`); every image is
embedded once, and inside its batch it forms the paper's two pairs (:func:`batch_pairs`): one with the other photo
of its person, one with the *closest* photo of another person (the hardest negative the batch offers). Same loss
(BCE on the logistic unit of the Euclidean distance), a quarter of the trunk work, and negatives that teach.
"""

from __future__ import annotations

import numpy as np
import torch


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


def batch_pairs(embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(a, b, same)`` positions within a batch: for every image with another photo of its person in the batch, that
    positive pair; for every image with another person in the batch, the pair with the closest such photo."""
    with torch.no_grad():
        distances = torch.cdist(embeddings.float(), embeddings.float())
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(len(labels), dtype=torch.bool)
        positive = same & ~eye
        has_positive = positive.any(dim=1)
        partner = positive.float().argmax(dim=1)
        other = distances.masked_fill(same, float("inf"))
        has_negative = torch.isfinite(other).any(dim=1)
        hardest = other.argmin(dim=1)
    index = torch.arange(len(labels))
    a = torch.cat([index[has_positive], index[has_negative]])
    b = torch.cat([partner[has_positive], hardest[has_negative]])
    y = torch.cat([torch.ones(int(has_positive.sum())), torch.zeros(int(has_negative.sum()))])
    return a, b, y


__all__ = ["batch_pairs", "person_batches"]
