"""LFW "unrestricted" protocol with training: for each fold, train on everyone except that fold's people.

``cross_train_evaluate(pairs_path, images_dir, ...)``: the people of fold ``k`` are the names in fold
``k``'s lines of the pairs file. The head tested on fold ``k`` is trained on every person of
``images_dir`` who is not named in fold ``k`` (the people of the other folds plus the people in no
pair); fold ``k``'s people are never seen, not even for validation or early stopping.

Threshold of fold ``k`` (honest): the trained model's own threshold, i.e. the best-accuracy distance on
its validation people (20 % of its *training* people, split by person), never anything measured on
fold ``k``. ``accuracy`` is the mean over folds of the accuracy at that threshold. For comparison the
result also carries ``accuracy_kfold_threshold``: C's standard k-fold rule (threshold chosen on the other
folds' distances) applied to the cross-trained distances. AUC, EER and TAR@FAR come from
``metrics.verification_report`` on the pooled distances of all folds (each fold scored by its own head).

The trunk runs once per image for all folds (``features.extract_features``, cached), so five trainings
cost little more than one extraction.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from .dataset import dataset_from_features, list_images
from .errors import FacetwinError
from .features import extract_features
from .train import fit, make_backbone, pair_distances
from .train_config import TrainConfig


def _person(rel: str) -> str:
    return Path(rel).parts[0]


def cross_train_evaluate(
    pairs_path,
    images_dir,
    *,
    backbone: str = "sface",
    train_options: dict | None = None,
    skip_missing: bool = False,
    progress: bool = True,
    plot_path=None,
) -> dict:
    """Evaluate ``pairs_path`` with one head per fold trained on the other people; the DESIGN.md evaluation JSON."""
    from . import metrics
    from .pairs_file import read_pairs

    start = time.perf_counter()
    options = dict(train_options or {})
    weights = options.pop("weights", None)
    no_face = options.get("no_face", "center")
    config = TrainConfig(backbone=backbone, weights=weights, **options).resolved()
    pf = read_pairs(pairs_path)
    images_dir = Path(images_dir)

    pairs = list(pf.pairs)
    missing = [p for p in pairs if not (images_dir / p.a).is_file() or not (images_dir / p.b).is_file()]
    if missing and not skip_missing:
        p = missing[0]
        gone = p.a if not (images_dir / p.a).is_file() else p.b
        raise FacetwinError(f"{images_dir / gone}: no such file ({len(missing)} pair(s) have a missing image).")
    pairs = [p for p in pairs if p not in missing] if missing else pairs

    bb = make_backbone(config.backbone, config.weights)
    files, owners = list_images(images_dir)
    pair_files = sorted({str(images_dir / p.a) for p in pairs} | {str(images_dir / p.b) for p in pairs})
    all_files = list(dict.fromkeys(files + pair_files))
    fs = extract_features(bb, all_files, progress=progress, desc="trunk features")
    row_of = {f: i for i, f in enumerate(fs.files)}
    owner_of = dict(zip(files, owners, strict=True))

    a_rows = np.array([row_of[str(images_dir / p.a)] for p in pairs])
    b_rows = np.array([row_of[str(images_dir / p.b)] for p in pairs])
    usable = fs.ok[a_rows] & fs.ok[b_rows]
    if not usable.all():
        bad = [f for f, m in fs.failed][:1]
        if not skip_missing:
            raise FacetwinError(f"{bad[0] if bad else 'a pair image'}: unreadable ({int((~usable).sum())} pair(s)).")
    same = np.array([p.same for p in pairs], dtype=bool)
    fold = np.array([p.fold for p in pairs], dtype=np.int64)
    x_all = torch.from_numpy(np.nan_to_num(fs.features))
    distances = np.full(len(pairs), np.nan)
    per_fold = []
    fold_ids = sorted(set(fold.tolist()))
    for k in fold_ids:
        held_out = {_person(p.a) for p in pairs if p.fold == k} | {_person(p.b) for p in pairs if p.fold == k}
        train_files = [f for f in files if owner_of[f] not in held_out]
        sub = _subset(fs, [row_of[f] for f in train_files])
        data = dataset_from_features(str(images_dir), sub, [owner_of[f] for f in train_files], no_face=no_face)
        if progress:
            print(
                f"fold {k}: training on {len(data.files)} images of {len(data.people)} people "
                f"(fold's {len(held_out)} people held out)"
            )
        result = fit(data.features, data.labels, bb, config, progress=progress)
        sel = np.flatnonzero((fold == k) & usable)
        d = pair_distances(result.model, x_all, a_rows[sel], b_rows[sel], config.precision)
        distances[sel] = d
        t = float(result.thresholds["value"])
        acc = float(np.mean((d <= t) == same[sel])) if len(sel) else float("nan")
        per_fold.append(
            {
                "fold": k,
                "pairs": int(len(sel)),
                "held_out_people": len(held_out),
                "train_images": len(data.files),
                "train_people": len(data.people),
                "threshold": t,
                "threshold_rule": result.thresholds["used"],
                "accuracy": acc,
                "kept_epoch": result.summary.get("kept_epoch"),
                "val_auc": result.summary.get("val_auc"),
                "initial_val_auc": result.summary.get("initial_val_auc"),
            }
        )

    ok = usable
    report = dict(metrics.verification_report(distances[ok], same[ok], fold[ok]))
    kfold_acc = report.get("accuracy")
    kfold_std = report.get("accuracy_std")
    accs = np.array([f["accuracy"] for f in per_fold], dtype=np.float64)
    pair_file_set = set(pair_files)
    report.update(
        {
            "pairs": int(ok.sum()),
            "folds": len(fold_ids),
            "accuracy": float(np.nanmean(accs)),
            "accuracy_std": float(np.nanstd(accs)),
            "fold_accuracies": [float(a) for a in accs],
            "accuracy_kfold_threshold": kfold_acc,
            "accuracy_kfold_threshold_std": kfold_std,
            "fold_accuracies_kfold_threshold": report["fold_accuracies"],
            "threshold_rule": "each fold: the best-accuracy distance on the trained model's own validation people "
            "(20% of its training people); never measured on the held-out fold",
            "per_fold": per_fold,
            "images": len(pair_files),
            "no_face": {
                "count": len([f for f in fs.no_face if f in pair_file_set]),
                "action": "centre crop used",
                "files": [f for f in fs.no_face if f in pair_file_set][:20],
            },
            "skipped_pairs": len(pairs) - int(ok.sum()) + len(missing),
            "seconds": time.perf_counter() - start,
            "model": {
                "protocol": "LFW unrestricted: one head per fold trained on the people outside that fold",
                "backbone": bb.describe(),
                "distance": "euclidean",
                "train_options": {k: v for k, v in vars(config).items()},
                "training_images_dir": str(images_dir),
                "extraction": {"computed": fs.computed, "cached": fs.cached, "seconds": fs.seconds},
            },
        }
    )
    if plot_path is not None:
        from .report_plot import save_report_plot

        threshold = float(np.median([f["threshold"] for f in per_fold]))
        accuracy = f"{report['accuracy']:.4f} ± {report['accuracy_std']:.4f}"
        title = f"{Path(pairs_path).name}, cross-trained: accuracy {accuracy}"
        save_report_plot(plot_path, distances[ok], same[ok], threshold, title)
    return report


def _subset(fs, rows: list[int]):
    from .features import FeatureSet

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
