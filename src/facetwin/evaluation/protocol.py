"""Verification accuracy on a pairs file, the way the field measures it (LFW k-fold protocol).

Every image is embedded once, through the trunk-feature cache (``training/features.py``, keyed by image
content and backbone), so running the same evaluation again, or evaluating another head on the same
backbone, reads the trunk's work from disk.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facetwin.backbones.registry import DEFAULT_BACKBONE
from facetwin.core.jsonsafe import dumps
from facetwin.core.paths import atomic_write_text
from facetwin.core.text import count
from facetwin.errors import FacetwinError
from facetwin.evaluation.metrics import verification_report
from facetwin.evaluation.pairs_file import read_pairs
from facetwin.evaluation.plots import save_report_plot
from facetwin.loading import load
from facetwin.model import Model
from facetwin.training.features import extract_features

EXAMPLES = 5  # how many problem files a message or report lists


@dataclass
class ScoredPairs:
    """The distances of the usable pairs of a pairs file under one model, and what was left out."""

    distances: np.ndarray
    same: np.ndarray
    folds: np.ndarray
    fold_count: int
    images: int
    skipped: int
    no_face: list[str]
    failed: list[tuple[str, str]]
    cache: dict
    faces: dict  # how a face was chosen in photos with several, and how many had several


def score_pairs(
    pairs_file: str | Path,
    images_dir: str | Path,
    model: Model,
    *,
    skip_missing: bool = False,
    no_face: str = "center",
    batch_size: int = 32,
    progress: bool = True,
) -> ScoredPairs:
    """Embed every image of the pairs once (through the trunk-feature cache) and measure each pair.

    Missing or unreadable images raise :class:`FacetwinError` listing the first few, unless
    ``skip_missing`` drops their pairs.
    """
    pairs = read_pairs(pairs_file)
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise FacetwinError(f"{images_dir}: no such images folder.")
    files = sorted({p.a for p in pairs.pairs} | {p.b for p in pairs.pairs})
    paths = [images_dir / f for f in files]
    if not any(path.is_file() for path in paths):
        raise FacetwinError(f"{images_dir}: holds none of the {count(len(files), 'image')} that {pairs_file} names "
                            f"(the first: {files[0]}); is it the images folder of these pairs?")
    fs = extract_features(
        model.backbone, paths, batch_size=batch_size, progress=progress, desc="embedding", face=model.face_rule
    )
    failed = list(fs.failed)
    ok = fs.ok.copy()
    if no_face == "error":
        no_face_rows = {str(f) for f in fs.no_face}
        failed += [(f, f"{f}: no face found.") for f in fs.no_face]
        ok &= np.array([str(f) not in no_face_rows for f in paths])
    if failed and not skip_missing:
        raise FacetwinError(
            f"{len(failed)} of {count(len(files), 'image')} of {pairs_file} cannot be used (the first: "
            f"{failed[0][1].rstrip('.')}); "
            "fix them or pass --skip-missing to drop their pairs."
        )
    embeddings = np.full((len(files), model.embedding_dim), np.nan, dtype=np.float32)
    if ok.any():
        embeddings[ok] = model.embed_features(fs.features[ok])
    row = {name: i for i, name in enumerate(files)}
    usable = [p for p in pairs.pairs if ok[row[p.a]] and ok[row[p.b]]]
    if not usable:
        raise FacetwinError(f"{pairs_file}: no pair has two usable images.")
    a = embeddings[[row[p.a] for p in usable]]
    b = embeddings[[row[p.b] for p in usable]]
    return ScoredPairs(
        distances=model.distances(a, b),
        same=np.array([p.same for p in usable]),
        folds=np.array([p.fold for p in usable]),
        fold_count=pairs.folds,
        images=len(files),
        skipped=len(pairs.pairs) - len(usable),
        no_face=[str(Path(f).relative_to(images_dir)) for f in fs.no_face],
        failed=failed,
        cache={"computed": fs.computed, "cached": fs.cached},
        faces={
            "rule": model.face_rule,
            "several_faces": int(np.sum(fs.faces_found > 1)),
            "several_faces_files": [str(Path(fs.files[i]).relative_to(images_dir))
                                    for i in np.flatnonzero(fs.faces_found > 1)[:EXAMPLES]],
        },
    )


def evaluate(
    pairs_file: str | Path,
    images_dir: str | Path,
    *,
    model: Model | str | Path = DEFAULT_BACKBONE,
    skip_missing: bool = False,
    no_face: str = "center",
    batch_size: int = 32,
    progress: bool = True,
    json_path: str | Path | None = None,
    plot_path: str | Path | None = None,
) -> dict:
    """Score every pair of ``pairs_file`` (see :func:`score_pairs`) with the k-fold protocol: the evaluation JSON."""
    started = time.perf_counter()
    model = model if isinstance(model, Model) else load(model)
    scored = score_pairs(
        pairs_file,
        images_dir,
        model,
        skip_missing=skip_missing,
        no_face=no_face,
        batch_size=batch_size,
        progress=progress,
    )
    report = verification_report(scored.distances, scored.same, scored.folds)
    result = {
        "pairs": len(scored.distances),
        "folds": scored.fold_count,
        "accuracy": report["accuracy"],
        "accuracy_std": report["accuracy_std"],
        "auc": report["auc"],
        "eer": report["eer"],
        "tar_at_far": report["tar_at_far"],
        "images": scored.images,
        "no_face": {
            "count": len(scored.no_face),
            "files": scored.no_face[:EXAMPLES],
            "action": "centre crop used" if no_face == "center" else "image refused",
        },
        "faces": scored.faces,
        "skipped_pairs": scored.skipped,
        "unusable_images": [{"file": f, "problem": m} for f, m in scored.failed[:EXAMPLES]],
        "embedding_cache": scored.cache,
        "fold_accuracies": report["fold_accuracies"],
        "thresholds": report["thresholds"],
        "protocol": f"{_rule(scored.folds)}; AUC and EER over all pairs",
        "seconds": round(time.perf_counter() - started, 2),
        "model": model.description,
    }
    if json_path is not None:
        write_json(result, json_path)
    if plot_path is not None:
        title = f"{Path(pairs_file).name}: accuracy {result['accuracy']:.4f} ± {result['accuracy_std']:.4f}"
        threshold = float(np.median(report["thresholds"]))
        save_report_plot(plot_path, scored.distances, scored.same, threshold, title, result)
    return result


HELD_OUT = "threshold of each fold chosen on the other folds"
ONE_FOLD = "threshold chosen on the same pairs it is tested on (one fold: no held-out pairs, so optimistic)"


def _rule(folds) -> str:
    """How thresholds were chosen: on the other folds, or (one fold) on the very pairs tested."""
    return HELD_OUT if np.unique(folds).size > 1 else ONE_FOLD


def write_json(result: dict, path: str | Path) -> None:
    """Write an evaluation result as one JSON object, atomically."""
    atomic_write_text(path, dumps(result) + "\n")


def summary(result: dict) -> str:
    """A few human lines about an evaluation result."""
    tar = result["tar_at_far"]
    rule = result.get("protocol", ONE_FOLD if result.get("folds") == 1 else HELD_OUT).split(";")[0]
    if "accuracy_kfold_threshold" in result:  # cross-trained: each fold at its own model's threshold
        rule = (
            f"each fold at its trained model's own threshold; {result['accuracy_kfold_threshold'] * 100:.2f} % "
            "with thresholds chosen on the other folds"
        )
    lines = [
        f"{count(result['pairs'], 'pair')} in {count(result['folds'], 'fold')}, {count(result['images'], 'image')}, "
        f"{result['seconds']:.1f} s",
        f"accuracy {result['accuracy'] * 100:.2f} % ± {result['accuracy_std'] * 100:.2f} ({rule})",
        f"AUC {result['auc']:.4f}   EER {result['eer'] * 100:.2f} %   "
        f"TAR@FAR=0.1% {tar['0.001'] * 100:.2f} %   TAR@FAR=1% {tar['0.01'] * 100:.2f} %",
    ]
    several = result.get("faces", {}).get("several_faces", 0)
    if several:
        lines.append(f"{count(several, 'image')} with several faces: the {result['faces']['rule']} face used (--face)")
    if result["no_face"]["count"]:
        lines.append(f"no face found in {count(result['no_face']['count'], 'image')}: {result['no_face']['action']}")
    if result.get("skipped_pairs"):
        lines.append(f"{count(result['skipped_pairs'], 'pair')} skipped for unusable images")
    return "\n".join(lines)
