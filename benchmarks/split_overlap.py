"""How much of each validation split the head has already seen in training, on a folder-per-person data set.

    python benchmarks/split_overlap.py [--data ../shared/data/lfw-dev/images] [--seed 0]

Draws the paper's pairs (``facetwin.pairs``), splits them as ``facetwin train`` does (``--split paper``:
Keras' ``validation_split=0.2`` on the pair array; ``--split person``: 20 % of the people), and prints the
share of validation pairs with an image that also occurs in a training pair, and the share of validation
people who occur in training pairs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from facetwin.dataset import list_images
from facetwin.pairs import draw_pairs, epoch_rng
from facetwin.splits import keras_split_at, split_people

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "lfw-dev" / "images"


def overlap(labels: np.ndarray, train: tuple, val: tuple) -> tuple[float, float]:
    """(share of validation pairs with an image seen in training, share of validation people seen in training)."""
    seen = np.zeros(len(labels), dtype=bool)
    seen[train[0]] = seen[train[1]] = True
    pairs_seen = float(np.mean(seen[val[0]] | seen[val[1]]))
    val_people = set(labels[val[0]]) | set(labels[val[1]])
    train_people = set(labels[seen])
    return pairs_seen, len(val_people & train_people) / len(val_people)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val-fraction", type=float, default=0.2)
    args = parser.parse_args()
    files, owners = list_images(args.data)
    labels = np.array(owners)
    print(f"{len(files)} images of {len(set(owners))} people in {args.data}")

    a, b, _ = draw_pairs(labels, epoch_rng(args.seed, 0))
    at = keras_split_at(len(a), args.val_fraction)
    pairs, people = overlap(labels, (a[:at], b[:at]), (a[at:], b[at:]))
    print(f"--split paper : {len(a) - at} validation pairs; {pairs:.1%} contain an image seen in training, "
          f"{people:.1%} of validation people occur in training pairs")

    val = split_people(labels, args.val_fraction, args.seed)
    train_idx, val_idx = np.flatnonzero(~val), np.flatnonzero(val)
    ta, tb, _ = draw_pairs(labels[train_idx], epoch_rng(args.seed, 0))
    va, vb, _ = draw_pairs(labels[val_idx], epoch_rng(args.seed, 0, 1))
    pairs, people = overlap(labels, (train_idx[ta], train_idx[tb]), (val_idx[va], val_idx[vb]))
    print(f"--split person: {len(va)} validation pairs; {pairs:.1%} contain an image seen in training, "
          f"{people:.1%} of validation people occur in training pairs")


if __name__ == "__main__":
    main()
