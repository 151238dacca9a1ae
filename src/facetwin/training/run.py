"""``train(DATA_DIR, out=RUN_DIR, ...)``: a folder of people in, a run directory out.

The frozen trunk runs once per image (``features.extract_features``, cached across runs); the head trains
on the cached features (``fit.py``); the run directory is written by ``artifact.save_run``.
Defaults (``TrainConfig``): the paper's model for ``vggface`` (fc8 + tanh, BCE, Adam 1e-3, batch 32,
60 epochs); for ``sface`` a residual head that starts as the backbone itself (see ``siamese.py``).
``preset="paper"`` sets the paper's hyper-parameters.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from facetwin.backbones.registry import DEFAULT_BACKBONE
from facetwin.core.text import count
from facetwin.errors import FacetwinError
from facetwin.training.adapt import adapt_report
from facetwin.training.artifact import save_run
from facetwin.training.augment import Augment
from facetwin.training.config import TrainConfig
from facetwin.training.dataset import load_dataset
from facetwin.training.fit import fit
from facetwin.training.trainable import training_backbone

log = logging.getLogger(__name__)


def train(
    data_dir: str | Path,
    out: str | Path,
    *,
    backbone: str = DEFAULT_BACKBONE,
    weights: str | None = None,
    preset: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    **options,
) -> dict:
    """Train a Siamese head on a folder-per-person ``data_dir`` and write the run directory ``out``.

    ``options`` are the fields of :class:`TrainConfig` (epochs, batch_size, lr, split, val_fraction, seed,
    pairs, embedding_dim, loss, no_face, ...). A run directory that holds a model or a checkpoint needs
    ``resume`` (continue) or ``overwrite`` (start over). Returns the training summary (also in ``model.json``).
    """
    unknown = set(options) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise TypeError(f"unknown training option(s): {', '.join(sorted(unknown))}")
    config = TrainConfig(backbone=backbone, weights=weights, preset=preset, **options).resolved()
    out = Path(out)
    _check_out(out, resume, overwrite)
    bb = training_backbone(config)
    data = load_dataset(data_dir, bb, no_face=config.no_face, progress=progress, augment=Augment.from_config(config),
                        face=config.face)
    rep = data.report()
    log.info(
        "%s of %s (%d computed, %d from the feature cache); %d unreadable, %s without a face (%s)",
        count(rep["images"], "image"),
        count(rep["people"], "person"),
        data.extraction["computed"],
        data.extraction["cached"],
        rep["unreadable"],
        count(rep["no_face"], "image"),
        rep["no_face_action"],
    )
    for message in rep["unreadable_first"]:
        log.info("  unreadable: %s", message)
    for f in rep["no_face_first"]:
        log.info("  no face: %s", f)
    result = fit(
        data.features,
        data.labels,
        bb,
        config,
        checkpoint=out / "checkpoint.pt",
        resume=resume,
        progress=progress,
        augmented=data.augmented,
    )
    summary = dict(result.summary)
    if config.adapt:
        summary["adapt"] = adapt_report(summary)
    summary["data"] = {"dir": str(Path(data_dir).resolve()), **rep, "extraction": data.extraction}
    save_run(
        out,
        backbone=bb,
        model=result.model,
        config=config,
        history=result.history,
        summary=summary,
        thresholds=result.thresholds,
    )
    return summary


def _check_out(out: Path, resume: bool, overwrite: bool) -> None:
    """The run directory may be written: new, or ``resume``/``overwrite`` said what to do with what it holds."""
    if resume and overwrite:
        raise FacetwinError("--resume and --overwrite exclude each other: continue the run, or start it over.")
    if out.exists() and not out.is_dir():
        raise FacetwinError(f"{out}: is a file, not a run directory.")
    held = [name for name in ("model.json", "checkpoint.pt") if (out / name).exists()]
    if held and not (resume or overwrite):
        raise FacetwinError(
            f"{out}: already holds {' and '.join(held)}; pass --resume to continue it, --overwrite to start over, "
            "or choose another --out."
        )
    if overwrite:
        (out / "checkpoint.pt").unlink(missing_ok=True)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FacetwinError(f"{out}: cannot create the run directory ({exc.strerror or exc}).") from None
