"""Would a learned weighting of two models beat their concatenation? Score-level fusion on lfw-dev, k-fold.

    python benchmarks/score_fusion.py [--models sface:flip,dlib:flip] [--pairs ../shared/data/lfw-dev/pairs.txt]

Each model scores every pair (cosine distance; trunk features come from the cache). For each test fold, the
distances are z-scored with the other folds' mean and spread, combined as ``w * z1 + (1 - w) * z2``, and ``w``
(41 steps in 0..1) and the threshold are chosen on the other folds only; the fold is then scored at them. Prints
each model's own k-fold accuracy, the per-fold weights and the fused k-fold accuracy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PAIRS = ROOT.parent / "shared" / "data" / "lfw-dev" / "pairs.txt"


def fused_accuracy(distances: np.ndarray, same: np.ndarray, folds: np.ndarray) -> tuple[float, list[float]]:
    """k-fold accuracy of the weighted z-score sum of two distance columns, and the weight of each fold."""
    from facetwin.evaluation.metrics import accuracy, best_threshold

    scores, weights = [], []
    for fold in np.unique(folds):
        train = folds != fold
        z = (distances - distances[train].mean(0)) / distances[train].std(0)
        best = (-1.0, 0.0, 0.0)
        for w in np.linspace(0, 1, 41):
            fused = w * z[:, 0] + (1 - w) * z[:, 1]
            threshold = best_threshold(fused[train], same[train])
            acc = accuracy(fused[train], same[train], threshold)
            if acc > best[0] + 1e-12:
                best = (acc, w, threshold)
        _, w, threshold = best
        fused = w * z[:, 0] + (1 - w) * z[:, 1]
        scores.append(accuracy(fused[~train], same[~train], threshold))
        weights.append(float(w))
    return float(np.mean(scores)), weights


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="sface:flip,dlib:flip", help="two model sources, comma-separated")
    p.add_argument("--pairs", type=Path, default=PAIRS)
    args = p.parse_args()
    if not args.pairs.is_file():
        print(f"{args.pairs}: pairs file not found", file=sys.stderr)
        return 2
    import facetwin
    from facetwin.evaluation.metrics import verification_report
    from facetwin.evaluation.protocol import score_pairs

    names = args.models.split(",")
    if len(names) != 2:
        p.error("--models takes exactly two sources")
    scored = [score_pairs(args.pairs, args.pairs.parent / "images", facetwin.load(n), progress=False) for n in names]
    same, folds = scored[0].same, scored[0].folds
    for name, s in zip(names, scored, strict=True):
        report = verification_report(s.distances, same, folds)
        print(f"{name:<14} k-fold accuracy {100 * report['accuracy']:.2f} %  AUC {report['auc']:.4f}")
    accuracy, weights = fused_accuracy(np.stack([s.distances for s in scored], 1), same, folds)
    print(f"fused          k-fold accuracy {100 * accuracy:.2f} %  (weight of {names[0]} per fold: "
          + ", ".join(f"{w:.3f}" for w in weights) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
