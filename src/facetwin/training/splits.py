"""Training/validation splits: by person (facetwin's default) or the paper's Keras ``validation_split``.

- ``person``: a seeded random ``val_fraction`` of the *people* validate; their images never appear in a
  training pair, so validation measures what matters, verification of people the head never saw.
- ``paper``: Keras' ``fit(validation_split=0.2)`` on the pair array: the last 20 % of the pairs (taken
  before Keras shuffles) validate. Training pairs then still contain validation images (as negative
  partners) and every validation person's look-alikes, so that figure is optimistic.
"""

from __future__ import annotations

import numpy as np

SPLITS = ("person", "paper")


def split_people(labels: np.ndarray, val_fraction: float, seed: int) -> np.ndarray:
    """Bool mask of the images whose person validates (``round(val_fraction * people)`` people, at least 2)."""
    labels = np.asarray(labels)
    people = np.unique(labels)
    if val_fraction <= 0:
        return np.zeros(len(labels), dtype=bool)
    n_val = int(round(val_fraction * len(people)))
    n_val = min(max(n_val, 2), len(people) - 2)
    if n_val <= 0:
        return np.zeros(len(labels), dtype=bool)
    rng = np.random.default_rng([int(seed), 7919])
    chosen = rng.choice(people, size=n_val, replace=False)
    return np.isin(labels, chosen)


def keras_split_at(n_pairs: int, val_fraction: float) -> int:
    """Index where Keras' ``validation_split`` cuts an array of ``n_pairs``: train ``[:at]``, validate ``[at:]``."""
    return int(n_pairs * (1.0 - val_fraction))
