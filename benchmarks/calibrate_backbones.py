"""Calibrate a plain backbone's decision rule on lfw-dev: the numbers behind ``SFace.calibration``.

    python benchmarks/calibrate_backbones.py --backbone sface
    python benchmarks/calibrate_backbones.py --backbone sface --channel-order bgr   # the other channel order

Per image: YuNet detection, five-point alignment (centre crop when no face is found, reported), the
backbone's own embedding, its default distance. Then the LFW 5-fold protocol: for each fold the threshold
with the best accuracy on the other 4 folds is applied to it; the mean and standard deviation of the fold
accuracies are printed. The constants written into the backbone are:

- ``threshold``: the best-accuracy threshold on all pairs (midpoint between neighbouring distances);
- ``slope``, ``intercept``: logistic regression of same-person on distance over all pairs
  (``probability(d) = sigmoid(slope * d + intercept)``).

The k-fold protocol is computed here; ``facetwin.metrics.kfold_accuracy`` (when present) is printed beside it
as a cross-check.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PAIRS = ROOT.parent / "shared" / "data" / "lfw-dev" / "pairs.txt"


def read_pairs(path: Path) -> tuple[list[tuple[str, str, bool, int]], int]:
    """LFW pairs.txt: header ``FOLDS PER_FOLD``; per fold PER_FOLD same lines then PER_FOLD different lines."""
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    folds, per_fold = int(lines[0][0]), int(lines[0][1])
    pairs = []
    for i, parts in enumerate(lines[1:]):
        fold = i // (2 * per_fold)
        if len(parts) == 3:
            name, n1, n2 = parts
            pairs.append((f"{name}/{name}_{int(n1):04d}.jpg", f"{name}/{name}_{int(n2):04d}.jpg", True, fold))
        elif len(parts) == 4:
            a, n1, b, n2 = parts
            pairs.append((f"{a}/{a}_{int(n1):04d}.jpg", f"{b}/{b}_{int(n2):04d}.jpg", False, fold))
        else:
            raise SystemExit(f"{path}: line {i + 2} is not a pair")
    return pairs, folds


def best_threshold(d: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """(threshold, accuracy) maximising accuracy of ``same = d <= threshold`` (midpoints between distances)."""
    order = np.argsort(d, kind="stable")
    ds, ss = d[order], same[order]
    # predicting "same" for the first k pairs: correct = same among first k + different among the rest
    correct = np.concatenate([[0], np.cumsum(ss)]) + (np.sum(~ss) - np.concatenate([[0], np.cumsum(~ss)]))
    # only cut between distinct distances
    valid = np.ones(len(ds) + 1, dtype=bool)
    valid[1:-1] = ds[1:] > ds[:-1]
    k = int(np.argmax(np.where(valid, correct, -1)))
    if k == 0:
        thr = float(ds[0]) - 1e-6
    elif k == len(ds):
        thr = float(ds[-1]) + 1e-6
    else:
        thr = float((ds[k - 1] + ds[k]) / 2)
    return thr, float(correct[k] / len(ds))


def kfold(d: np.ndarray, same: np.ndarray, folds: np.ndarray) -> dict:
    accs, thrs = [], []
    for f in np.unique(folds):
        train, test = folds != f, folds == f
        thr, _ = best_threshold(d[train], same[train])
        accs.append(float(np.mean((d[test] <= thr) == same[test])))
        thrs.append(thr)
    return {"accuracy": float(np.mean(accs)), "accuracy_std": float(np.std(accs)), "thresholds": thrs, "folds": accs}


def logistic(d: np.ndarray, same: np.ndarray, iters: int = 200) -> tuple[float, float]:
    """Maximum-likelihood ``sigmoid(slope*d + intercept)`` by Newton's method.

    Fitted on standardised distances from zero (a fixed start diverges for small distance scales, such as
    dlib's cosine distances), then mapped back to raw distances.
    """
    mean, std = float(np.mean(d)), float(np.std(d)) or 1.0
    x = np.c_[(d - mean) / std, np.ones_like(d)]
    y = same.astype(np.float64)
    w = np.zeros(2)
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        grad = x.T @ (y - p)
        hess = (x * (p * (1 - p))[:, None]).T @ x + 1e-9 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w = w + step
        if np.abs(step).max() < 1e-10:
            break
    return float(w[0] / std), float(w[1] - w[0] * mean / std)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="sface")
    p.add_argument("--pairs", type=Path, default=DEFAULT_PAIRS)
    p.add_argument("--images", type=Path, help="images folder (default: images/ next to the pairs file)")
    p.add_argument("--channel-order", choices=["rgb", "bgr"], help="sface only: input channel order to test")
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    args = p.parse_args()

    import facetwin.model as M
    from facetwin.backbones import get_backbone

    options = {"channel_order": args.channel_order} if args.channel_order else {}
    backbone = get_backbone(args.backbone, **options)
    model = M.from_backbone(backbone, threshold=0.0)
    pairs, nfolds = read_pairs(args.pairs)
    images = args.images or args.pairs.parent / "images"
    files = sorted({x for a, b, _, _ in pairs for x in (a, b)})
    start = time.perf_counter()
    batch = model.embed_many([str(images / f) for f in files], no_face="center", skip_unreadable=True, progress=True)
    seconds = time.perf_counter() - start
    index = {f: i for i, f in enumerate(files)}
    ia = np.array([index[a] for a, _, _, _ in pairs])
    ib = np.array([index[b] for _, b, _, _ in pairs])
    same = np.array([s for _, _, s, _ in pairs])
    folds = np.array([f for _, _, _, f in pairs])
    usable = batch.ok[ia] & batch.ok[ib]
    d = model.distances(batch.embeddings[ia[usable]], batch.embeddings[ib[usable]])
    same, folds = same[usable], folds[usable]

    result = kfold(d, same, folds)
    cross_check = None
    try:  # engineer C's implementation, when present: printed beside ours as a cross-check
        from facetwin import metrics

        cross_check = float(metrics.kfold_accuracy(d, same, folds)["accuracy"])
    except Exception:  # absent, or another signature: ours stands alone
        cross_check = None
    threshold, train_acc = best_threshold(d, same)
    slope, intercept = logistic(d, same)
    out = {
        "backbone": backbone.describe(),
        "pairs": int(len(pairs)),
        "pairs_used": int(usable.sum()),
        "folds": nfolds,
        "distance": model.distance,
        "kfold_accuracy": result["accuracy"],
        "kfold_accuracy_std": result.get("accuracy_std"),
        "kfold_accuracy_facetwin_metrics": cross_check,
        "threshold_all_pairs": threshold,
        "accuracy_at_threshold_all_pairs": train_acc,
        "logistic_slope": slope,
        "logistic_intercept": intercept,
        "images": len(files),
        "no_face": len(batch.no_face),
        "failed": len(batch.failed),
        "seconds_embedding": round(seconds, 1),
    }
    print(json.dumps(out, indent=2))
    print(
        f"\n{args.backbone}: 5-fold accuracy {100 * out['kfold_accuracy']:.2f} %"
        f" ± {100 * (out['kfold_accuracy_std'] or 0):.2f}"
        f" on {out['pairs_used']} pairs; Calibration(threshold={threshold:.4f}, slope={slope:.4f}, "
        f"intercept={intercept:.4f}); no face in {out['no_face']} of {len(files)} images",
        file=sys.stderr,
    )
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
