"""LFW "unrestricted" protocol with training: for each fold, train on everyone except that fold's people.

``cross_train_evaluate(pairs_path, images_dir, ...)``: the people of fold ``k`` are the names in fold
``k``'s lines of the pairs file. The head tested on fold ``k`` is trained on every person of
``images_dir`` who is not named in fold ``k`` (the people of the other folds plus the people in no
pair); fold ``k``'s people are never seen, not even for validation or early stopping.

Threshold of fold ``k`` (honest): the trained model's own threshold, i.e. the best-accuracy distance on
its validation people (20 % of its *training* people, split by person), never anything measured on
fold ``k``. ``accuracy`` is the mean over folds of the accuracy at that threshold. For comparison the
result also carries ``accuracy_kfold_threshold``: the standard k-fold rule (threshold chosen on the other
folds' distances) applied to the cross-trained distances. AUC, EER and TAR@FAR come from
``metrics.verification_report`` on the pooled distances of all folds (each fold scored by its own head).

The trunk runs once per image for all folds (``features.extract_features``, cached), so five trainings
cost little more than one extraction.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from facetwin.backbones.registry import DEFAULT_BACKBONE
from facetwin.core.text import count
from facetwin.errors import FacetwinError
from facetwin.evaluation.metrics import verification_report
from facetwin.evaluation.pairs_file import Pair, read_pairs
from facetwin.evaluation.plots import save_report_plot
from facetwin.training.augment import Augment
from facetwin.training.config import TrainConfig
from facetwin.training.dataset import augmented_copies, dataset_from_features, list_images
from facetwin.training.features import FeatureSet, extract_features
from facetwin.training.fit import fit, pair_distances
from facetwin.training.trainable import training_backbone

log = logging.getLogger(__name__)


def _person(rel: str) -> str:
    return Path(rel).parts[0]


def _present_pairs(pairs: list[Pair], images_dir: Path, skip_missing: bool) -> tuple[list[Pair], int]:
    """The pairs whose two images exist (an error on the first missing one unless ``skip_missing``)."""
    missing = [p for p in pairs if not (images_dir / p.a).is_file() or not (images_dir / p.b).is_file()]
    if missing and not skip_missing:
        p = missing[0]
        gone = p.a if not (images_dir / p.a).is_file() else p.b
        raise FacetwinError(f"{images_dir / gone}: no such file ({count(len(missing), 'pair')} with a missing image).")
    return [p for p in pairs if p not in missing], len(missing)


def _train_fold(k, pairs, files, owner_of, fs: FeatureSet, row_of, images_dir, bb, config, no_face, progress,
                bank=None):
    """The head of fold ``k``: trained on every person not named in fold ``k``'s pairs (``bank``: augmented copies
    of every row of ``fs``, or None)."""
    held_out = {_person(p.a) for p in pairs if p.fold == k} | {_person(p.b) for p in pairs if p.fold == k}
    train_files = [f for f in files if owner_of[f] not in held_out]
    sub = _subset(fs, [row_of[f] for f in train_files])
    data = dataset_from_features(str(images_dir), sub, [owner_of[f] for f in train_files], no_face=no_face)
    log.info(
        "fold %s: training on %d images of %d people (fold's %d people held out)",
        k,
        len(data.files),
        len(data.people),
        len(held_out),
    )
    augmented = None if bank is None else bank[:, [row_of[f] for f in data.files]]
    result = fit(data.features, data.labels, bb, config, progress=progress, augmented=augmented)
    return result, {"held_out_people": len(held_out), "train_images": len(data.files), "train_people": len(data.people)}


def cross_train_evaluate(
    pairs_path,
    images_dir,
    *,
    backbone: str = DEFAULT_BACKBONE,
    train_options: dict | None = None,
    skip_missing: bool = False,
    progress: bool = True,
    plot_path=None,
) -> dict:
    """Evaluate ``pairs_path`` with one head per fold trained on the other people; the DESIGN.md evaluation JSON."""
    start = time.perf_counter()
    options = dict(train_options or {})
    weights = options.pop("weights", None)
    no_face = options.get("no_face", "center")
    config = TrainConfig(backbone=backbone, weights=weights, **options).resolved()
    images_dir = Path(images_dir)
    pairs, n_missing = _present_pairs(list(read_pairs(pairs_path).pairs), images_dir, skip_missing)

    bb = training_backbone(config)
    files, owners = list_images(images_dir)
    pair_files = sorted({str(images_dir / p.a) for p in pairs} | {str(images_dir / p.b) for p in pairs})
    fs = extract_features(bb, list(dict.fromkeys(files + pair_files)), progress=progress, desc="trunk features",
                          face=config.face)
    row_of = {f: i for i, f in enumerate(fs.files)}
    owner_of = dict(zip(files, owners, strict=True))
    augment = Augment.from_config(config)  # training rows only draw from it; the pairs are scored on clean features
    bank = None if augment is None else augmented_copies(bb, fs.files, fs.features, augment, progress=progress,
                                                         face=config.face)

    a_rows = np.array([row_of[str(images_dir / p.a)] for p in pairs])
    b_rows = np.array([row_of[str(images_dir / p.b)] for p in pairs])
    usable = fs.ok[a_rows] & fs.ok[b_rows]
    if not usable.all() and not skip_missing:
        bad = [f for f, _ in fs.failed][:1]
        raise FacetwinError(f"{bad[0] if bad else 'a pair image'}: unreadable ({count(int((~usable).sum()), 'pair')}).")
    same = np.array([p.same for p in pairs], dtype=bool)
    fold = np.array([p.fold for p in pairs], dtype=np.int64)
    x_all = torch.from_numpy(np.nan_to_num(fs.features))
    distances = np.full(len(pairs), np.nan)
    per_fold = []
    for k in sorted(set(fold.tolist())):
        result, sizes = _train_fold(k, pairs, files, owner_of, fs, row_of, images_dir, bb, config, no_face, progress,
                                    bank)
        sel = np.flatnonzero((fold == k) & usable)
        distances[sel] = pair_distances(result.model, x_all, a_rows[sel], b_rows[sel], config.precision)
        t = float(result.thresholds["value"])
        per_fold.append(
            {
                "fold": k,
                "pairs": int(len(sel)),
                **sizes,
                "threshold": t,
                "threshold_rule": result.thresholds["used"],
                "accuracy": float(np.mean((distances[sel] <= t) == same[sel])) if len(sel) else float("nan"),
                "kept_epoch": result.summary.get("kept_epoch"),
                "val_auc": result.summary.get("val_auc"),
                "initial_val_auc": result.summary.get("initial_val_auc"),
                "epoch_seconds": result.summary.get("epoch_seconds"),
            }
        )
    report = _report(distances[usable], same[usable], fold[usable], per_fold)
    report.update(_context(fs, pair_files, bb, config, images_dir))
    report["skipped_pairs"] = len(pairs) - int(usable.sum()) + n_missing
    report["seconds"] = time.perf_counter() - start
    if plot_path is not None:
        threshold = float(np.median([f["threshold"] for f in per_fold]))
        title = (
            f"{Path(pairs_path).name}, cross-trained: accuracy {report['accuracy']:.4f} ± {report['accuracy_std']:.4f}"
        )
        save_report_plot(plot_path, distances[usable], same[usable], threshold, title, report)
    return report


def _context(fs: FeatureSet, pair_files: list[str], bb, config, images_dir: Path) -> dict:
    """The images, no-face and model keys of the evaluation JSON."""
    in_pairs = set(pair_files)
    no_face = [f for f in fs.no_face if f in in_pairs]
    return {
        "images": len(pair_files),
        "no_face": {"count": len(no_face), "action": "centre crop used", "files": no_face[:20]},
        "model": {
            "protocol": "LFW unrestricted: one head per fold trained on the people outside that fold",
            "backbone": bb.describe(),
            "distance": "euclidean",
            "train_options": dict(vars(config)),
            "training_images_dir": str(images_dir),
            "extraction": {"computed": fs.computed, "cached": fs.cached, "seconds": fs.seconds},
        },
    }


def _report(distances, same, fold, per_fold: list[dict]) -> dict:
    """Accuracy at each fold model's own threshold, beside the k-fold-threshold figures and the pooled metrics."""
    report = dict(verification_report(distances, same, fold))
    accs = np.array([f["accuracy"] for f in per_fold], dtype=np.float64)
    report.update(
        {
            "pairs": int(len(distances)),
            "folds": len(per_fold),
            "accuracy": float(np.nanmean(accs)),
            "accuracy_std": float(np.nanstd(accs)),
            "fold_accuracies": [float(a) for a in accs],
            "accuracy_kfold_threshold": report["accuracy"],
            "accuracy_kfold_threshold_std": report["accuracy_std"],
            "fold_accuracies_kfold_threshold": report["fold_accuracies"],
            "threshold_rule": "each fold: the best-accuracy distance on the trained model's own validation people "
            "(20% of its training people); never measured on the held-out fold",
            "per_fold": per_fold,
        }
    )
    return report


def _subset(fs: FeatureSet, rows: list[int]) -> FeatureSet:
    rows_arr = np.asarray(rows, dtype=np.int64)
    names = [fs.files[i] for i in rows]
    keep = set(names)
    return FeatureSet(
        files=names,
        features=fs.features[rows_arr] if len(rows) else fs.features[:0],
        ok=fs.ok[rows_arr] if len(rows) else fs.ok[:0],
        no_face=[f for f in fs.no_face if f in keep],
        failed=[(f, m) for f, m in fs.failed if f in keep],
    )
