"""How much of each validation split the head has already seen in training, on a folder-per-person data set.

    python benchmarks/split_overlap.py [--data ../shared/data/lfw-dev/images] [--seed 0]

Uses the pair plan of ``facetwin train --preset paper`` itself (``facetwin.training.pairs.PairPlan``): ``--split paper``
is Keras' ``validation_split=0.2`` on the pair array, ``--split person`` holds out 20 % of the people. Prints,
for the first epoch's training pairs, the share of validation pairs with an image that also occurs in a
training pair, and the share of validation people who occur in training pairs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from facetwin.training.config import TrainConfig
from facetwin.training.dataset import list_images
from facetwin.training.pairs import PairPlan

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "lfw-dev" / "images"


def overlap(labels: np.ndarray, plan: PairPlan) -> tuple[float, float]:
    """(share of validation pairs with an image seen in training, share of validation people seen in training)."""
    train_a, train_b, _ = plan.train_pairs(1)
    seen = np.zeros(len(labels), dtype=bool)
    seen[train_a] = seen[train_b] = True
    pairs_seen = float(np.mean(seen[plan.val_a] | seen[plan.val_b]))
    val_people = set(labels[plan.val_a]) | set(labels[plan.val_b])
    return pairs_seen, len(val_people & set(labels[seen])) / len(val_people)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    files, owners = list_images(args.data)
    labels = np.array(owners)
    print(f"{len(files)} images of {len(set(owners))} people in {args.data}")
    for split in ("paper", "person"):
        config = TrainConfig(backbone="sface", preset="paper", split=split, seed=args.seed).resolved()
        plan = PairPlan(labels, config)
        pairs, people = overlap(labels, plan)
        print(
            f"--split {split:<6}: {len(plan.val_a)} validation pairs; {pairs:.1%} contain an image seen in "
            f"training, {people:.1%} of validation people occur in training pairs"
        )


if __name__ == "__main__":
    main()
