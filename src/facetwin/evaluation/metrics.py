"""Verification metrics on distances (smaller = more similar) and the LFW k-fold protocol.

Every threshold applied to a fold is chosen on the other folds, never on the fold it is scored on.
"""

from __future__ import annotations

import numpy as np

FARS = (1e-3, 1e-2)


def _arrays(distances, same) -> tuple[np.ndarray, np.ndarray]:
    d = np.asarray(distances, dtype=np.float64).ravel()
    s = np.asarray(same, dtype=bool).ravel()
    if d.shape != s.shape:
        raise ValueError("distances and labels differ in length")
    return d, s


def roc(distances, same) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC as (FAR, TAR, thresholds): accepting ``d <= threshold``, one point per distinct distance,
    starting at (0, 0) with threshold ``-inf``."""
    d, s = _arrays(distances, same)
    order = np.argsort(d, kind="mergesort")
    d, s = d[order], s[order]
    last = np.r_[np.nonzero(np.diff(d))[0], d.size - 1]
    tp = np.cumsum(s)[last]
    fp = np.cumsum(~s)[last]
    positives, negatives = max(int(s.sum()), 1), max(int((~s).sum()), 1)
    far = np.r_[0.0, fp / negatives]
    tar = np.r_[0.0, tp / positives]
    return far, tar, np.r_[-np.inf, d[last]]


def auc(distances, same) -> float:
    """Area under the ROC curve."""
    far, tar, _ = roc(distances, same)
    return float(np.sum(np.diff(far) * (tar[1:] + tar[:-1]) / 2.0))


def eer(distances, same) -> float:
    """Equal error rate: where FAR equals FRR = 1 - TAR, linearly interpolated between ROC points."""
    far, tar, _ = roc(distances, same)
    gap = far - (1.0 - tar)  # rises from -1 to +1
    i = int(np.argmax(gap >= 0))
    if i == 0:
        return float(far[0])
    g0, g1 = gap[i - 1], gap[i]
    w = 0.0 if g1 == g0 else -g0 / (g1 - g0)
    return float(far[i - 1] + w * (far[i] - far[i - 1]))


def accuracy(distances, same, threshold: float) -> float:
    """Fraction of pairs decided right by ``same = d <= threshold``."""
    d, s = _arrays(distances, same)
    return float(np.mean((d <= threshold) == s))


def balanced_accuracy(distances, same, threshold: float) -> float:
    """Mean of the accuracies on same-person and on different-person pairs (each class weighs half)."""
    d, s = _arrays(distances, same)
    accept = d <= threshold
    return float((np.mean(accept[s]) if s.any() else 1.0) + (np.mean(~accept[~s]) if (~s).any() else 1.0)) / 2.0


def best_threshold(distances, same, balanced: bool = False) -> float:
    """The accuracy-maximising threshold (``balanced``: of :func:`balanced_accuracy`, so the share of same-person
    pairs does not move it), placed midway between neighbouring distinct distances."""
    d, s = _arrays(distances, same)
    far, tar, thresholds = roc(d, s)
    positives, negatives = (1, 1) if balanced else (s.sum(), (~s).sum())
    correct = tar * positives + (1.0 - far) * negatives
    i = int(np.argmax(correct))
    values = thresholds[1:]
    if i == 0:  # reject everything: just below the smallest distance
        return float(values[0] - 1e-9 * max(1.0, abs(values[0])))
    if i == len(values):
        return float(values[-1])
    return float((values[i - 1] + values[i]) / 2.0)


def threshold_at_far(distances, same, far: float) -> float:
    """The largest threshold whose FAR on these pairs is at most ``far``."""
    d, s = _arrays(distances, same)
    negatives = np.sort(d[~s])
    allowed = int(np.floor(far * negatives.size + 1e-9))
    if allowed >= negatives.size:
        return float(negatives[-1])
    below = negatives[allowed]
    if allowed == 0 or negatives[allowed - 1] == below:
        return float(np.nextafter(below, -np.inf))
    return float((negatives[allowed - 1] + below) / 2.0)


def _fold_splits(folds):
    folds = np.asarray(folds).ravel()
    keys = np.unique(folds)
    for key in keys:
        test = folds == key
        train = ~test if keys.size > 1 else test  # one fold only: the threshold is chosen on the same pairs
        yield train, test


def kfold_accuracy(distances, same, folds) -> dict:
    """Mean and std of held-out accuracy, each fold's threshold chosen on the other folds."""
    d, s = _arrays(distances, same)
    accuracies, thresholds = [], []
    for train, test in _fold_splits(folds):
        t = best_threshold(d[train], s[train])
        thresholds.append(t)
        accuracies.append(accuracy(d[test], s[test], t))
    return {
        "accuracy": float(np.mean(accuracies)),
        "accuracy_std": float(np.std(accuracies)),
        "fold_accuracies": [float(a) for a in accuracies],
        "thresholds": [float(t) for t in thresholds],
    }


def kfold_tar_at_far(distances, same, folds, far: float) -> float:
    """Mean held-out TAR at the threshold that gives FAR <= ``far`` on the other folds."""
    d, s = _arrays(distances, same)
    tars = []
    for train, test in _fold_splits(folds):
        t = threshold_at_far(d[train], s[train], far)
        tars.append(float(np.mean(d[test & s] <= t)) if (test & s).any() else float("nan"))
    return float(np.nanmean(tars))


def verification_report(distances, same, folds) -> dict:
    """The score-derived keys of facetwin's evaluation JSON."""
    report = kfold_accuracy(distances, same, folds)
    report["auc"] = auc(distances, same)
    report["eer"] = eer(distances, same)
    report["tar_at_far"] = {f"{far:g}": kfold_tar_at_far(distances, same, folds, far) for far in FARS}
    return report
