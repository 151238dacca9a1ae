"""Metrics agree with scikit-learn and with hand computation; pairs files parse with any fold count."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from facetwin.errors import FacetwinError
from facetwin.evaluation import metrics
from facetwin.evaluation.pairs_file import read_pairs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_and_auc_match_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    same = rng.random(500) < 0.4
    distances = np.round(rng.normal(loc=np.where(same, 0.4, 0.8), scale=0.2), 2)  # rounding makes ties
    fpr, tpr, _ = roc_curve(same, -distances, drop_intermediate=False)
    far, tar, _ = metrics.roc(distances, same)
    np.testing.assert_allclose(far, fpr, atol=1e-12)
    np.testing.assert_allclose(tar, tpr, atol=1e-12)
    assert metrics.auc(distances, same) == pytest.approx(roc_auc_score(same, -distances), abs=1e-12)


def test_hand_made_example():
    # fold 0: same 0.1, 0.3; different 0.2, 0.9 -- fold 1: same 0.2, 0.5; different 0.4, 0.8
    d = np.array([0.1, 0.3, 0.2, 0.9, 0.2, 0.5, 0.4, 0.8])
    s = np.array([1, 1, 0, 0, 1, 1, 0, 0], dtype=bool)
    f = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    # fold 1 alone: best accuracy 3/4 at thresholds in [0.2, 0.4) -> midpoint (0.2 + 0.4) / 2 = 0.3, applied to fold 0:
    # 0.1 ok, 0.3 ok, 0.2 wrongly accepted, 0.9 ok -> 3/4.
    # fold 0 alone: 3/4 at [0.1, 0.2) or at [0.3, 0.9); the first maximum is taken -> (0.1 + 0.2) / 2 = 0.15,
    # applied to fold 1: 0.2 and 0.5 rejected (wrong), 0.4 and 0.8 rejected (right) -> 2/4.
    report = metrics.kfold_accuracy(d, s, f)
    assert report["thresholds"] == pytest.approx([0.3, 0.15])  # per held-out fold
    assert report["fold_accuracies"] == pytest.approx([0.75, 0.5])
    assert report["accuracy"] == pytest.approx(0.625)
    assert report["accuracy_std"] == pytest.approx(0.125)
    # AUC: of 16 (same, different) pairs, count same < different (ties 1/2):
    # 0.1 beats 4, 0.2 beats 3.5 (tie with 0.2), 0.3 beats 3, 0.5 beats 2 -> 12.5 / 16
    assert metrics.auc(d, s) == pytest.approx(12.5 / 16)
    # EER: at threshold 0.3 FAR = 1/4, FRR = 1/4.
    assert metrics.eer(d, s) == pytest.approx(0.25)


def test_tar_at_far_uses_the_other_folds():
    d = np.array([0.1, 0.2, 0.5, 0.6, 0.15, 0.3, 0.55, 0.7])
    s = np.array([1, 1, 0, 0, 1, 1, 0, 0], dtype=bool)
    f = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    # FAR 0 on each training fold: threshold just below its smallest different distance (0.55 resp. 0.5)
    assert metrics.kfold_tar_at_far(d, s, f, 1e-3) == pytest.approx(1.0)
    assert metrics.threshold_at_far(d, s, 0.0) < 0.5


def test_pairs_file_any_fold_count(tmp_path):
    text = "3\t1\nA 1 2\nA 1 B 1\nB 1 3\nB 2 C 4\nC 10 11\nC 1 A 2\n"
    path = tmp_path / "pairs.txt"
    path.write_text(text)
    pf = read_pairs(path)
    assert (pf.folds, pf.per_fold, len(pf.pairs)) == (3, 1, 6)
    assert pf.pairs[4].a == "C/C_0010.jpg" and pf.pairs[4].same and pf.pairs[4].fold == 2
    assert pf.pairs[1].b == "B/B_0001.jpg" and not pf.pairs[1].same


def test_malformed_pairs_file_names_the_line(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text("1\t1\nA 1 2\nA 1 B\n")
    with pytest.raises(FacetwinError, match=r"pairs.txt, line 3"):
        read_pairs(path)


@pytest.mark.parametrize("seed", [3, 4])
def test_best_threshold_and_far_threshold_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    same = rng.random(300) < 0.5
    d = np.round(rng.normal(loc=np.where(same, 0.4, 0.7), scale=0.2), 2)
    candidates = np.r_[d.min() - 1, np.unique(d)]
    best = max(np.mean((d <= t) == same) for t in candidates)
    t = metrics.best_threshold(d, same)
    assert metrics.accuracy(d, same, t) == pytest.approx(best)
    assert not np.any(d == t)  # a midpoint, never on a sample
    for far in (0.01, 0.05, 0.2):
        t = metrics.threshold_at_far(d, same, far)
        assert np.mean(d[~same] <= t) <= far
        larger = np.unique(d[~same])[np.unique(d[~same]) > t]  # the next distance up would exceed the FAR
        assert np.mean(d[~same] <= larger[0]) > far
