"""Would a learned weighting of several models beat their concatenation? Score-level fusion on lfw-dev, k-fold.

    python benchmarks/score_fusion.py --models sface:flip,arcface-mbf:flip,edgeface-xs:flip

Each model scores every pair (cosine distance; trunk features come from the cache). For each test fold, the
distances are z-scored with the other folds' mean and spread and combined as a weighted sum; the weights (a grid of
step ``--step`` on the simplex) and the threshold are chosen on the other folds only, then the fold is scored at
them. Printed: each model's own k-fold accuracy, the plain rule (the concatenation of normalised embeddings: the
mean of the cosine distances, what a ``+``-joined model computes), the per-fold weights and the fused accuracy.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PAIRS = ROOT.parent / "shared" / "data" / "lfw-dev" / "pairs.txt"


def simplex(k: int, step: float) -> np.ndarray:
    """Every weight vector of ``k`` non-negative multiples of ``step`` summing to one."""
    n = round(1 / step)
    return np.array([w for w in itertools.product(range(n + 1), repeat=k) if sum(w) == n], dtype=np.float64) / n


def fused_accuracy(distances: np.ndarray, same: np.ndarray, folds: np.ndarray, step: float):
    """k-fold accuracy of the weighted z-score sum of the distance columns, and the weights of each fold."""
    from facetwin.evaluation.metrics import accuracy, best_threshold

    grid = simplex(distances.shape[1], step)
    scores, weights = [], []
    for fold in np.unique(folds):
        train = folds != fold
        z = (distances - distances[train].mean(0)) / distances[train].std(0)
        fused = z @ grid.T  # (pairs, candidates)
        train_acc = [accuracy(f[train], same[train], best_threshold(f[train], same[train])) for f in fused.T]
        best = int(np.argmax(train_acc))
        threshold = best_threshold(fused[train, best], same[train])
        scores.append(accuracy(fused[~train, best], same[~train], threshold))
        weights.append(grid[best])
    return float(np.mean(scores)), weights


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="sface:flip,arcface-mbf:flip,edgeface-xs:flip",
                   help="two or more model sources, comma-separated")
    p.add_argument("--pairs", type=Path, default=PAIRS)
    p.add_argument("--step", type=float, default=0.05, help="weight grid step")
    args = p.parse_args()
    if not args.pairs.is_file():
        print(f"{args.pairs}: pairs file not found", file=sys.stderr)
        return 2
    import facetwin
    from facetwin.evaluation.metrics import kfold_accuracy
    from facetwin.evaluation.protocol import score_pairs

    names = args.models.split(",")
    if len(names) < 2:
        p.error("--models takes two or more sources")
    scored = [score_pairs(args.pairs, args.pairs.parent / "images", facetwin.load(n), progress=False) for n in names]
    same, folds = scored[0].same, scored[0].folds
    distances = np.stack([s.distances for s in scored], 1)
    for name, column in zip(names, distances.T, strict=True):
        print(f"{name:<22} k-fold accuracy {100 * kfold_accuracy(column, same, folds)['accuracy']:.2f} %")
    plain = kfold_accuracy(distances.mean(1), same, folds)["accuracy"]
    print(f"{'plain (concatenation)':<22} k-fold accuracy {100 * plain:.2f} %")
    fused, weights = fused_accuracy(distances, same, folds, args.step)
    print(f"{'fused (learned)':<22} k-fold accuracy {100 * fused:.2f} %  weights per fold: "
          + "; ".join(", ".join(f"{w:.2f}" for w in row) for row in weights))
    return 0


if __name__ == "__main__":
    sys.exit(main())
