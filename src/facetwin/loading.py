"""``load(target)``: a model by backbone name or from a trained run directory, and which one it is.

The rule is explicit, in this order: a ``Path`` object or a string with a path separator is a run directory;
a backbone source (``sface``, ``sface+dlib``, ``dlib:flip``: see ``backbones/registry.py``) is that plain
model; any other existing folder is a run directory; anything else is an error that lists the backbones.
"""

from __future__ import annotations

from pathlib import Path

from facetwin.backbones.registry import DEFAULT_BACKBONE, backbone_names, get_backbone, is_backbone_name
from facetwin.errors import FacetwinError
from facetwin.model import Model, from_backbone
from facetwin.vision.prominence import DEFAULT_FACE_RULE


def is_run_dir(target: str | Path) -> bool:
    """Whether ``target`` is meant as a run directory (see the module docstring), not a backbone name."""
    text = str(target)
    if isinstance(target, Path) or "/" in text or "\\" in text:
        return True
    return not is_backbone_name(text) and Path(text).is_dir()


def load(
    target: str | Path = DEFAULT_BACKBONE,
    *,
    threshold: float | None = None,
    tta: str | None = None,
    face: str = DEFAULT_FACE_RULE,
    **backbone_options,
) -> Model:
    """A model by backbone source ("sface", "sface+dlib", with ``tta="flip"`` and backbone options) or a trained
    run directory (which fixes its backbone and augmentation); ``face`` chooses the face of a photo with several
    (``main``: the most prominent near the centre; ``largest``)."""
    if not is_run_dir(target):
        if not is_backbone_name(str(target)):
            raise FacetwinError(
                f"unknown backbone '{target}' and no run directory of that name; "
                f"backbones: {', '.join(backbone_names())}."
            )
        return from_backbone(get_backbone(str(target), tta=tta, **backbone_options), threshold=threshold, face=face)
    path = Path(target)
    if not (path / "model.json").is_file():
        raise FacetwinError(f"{path}: not a facetwin run directory (no model.json).")
    if backbone_options or tta not in (None, "none"):
        raise FacetwinError(
            f"{path}: a trained run fixes its backbone and augmentation; drop {sorted(backbone_options) or ['tta']}."
        )
    return _load_run(path, threshold, face)


def _load_run(run_dir: Path, threshold: float | None, face: str) -> Model:
    """The trained model of ``run_dir`` (distance "euclidean", the threshold chosen at training)."""
    from facetwin.training.artifact import load_siamese

    siamese, doc, backbone = load_siamese(run_dir)
    source = str(run_dir.resolve())
    description = {
        "run_dir": source,
        "backbone": doc["backbone"]["describe"],
        "head": doc["head"],
        "threshold": doc["threshold"],
        "preset": doc.get("preset"),
        "trained_on": doc.get("training", {}).get("data", {}).get("dir"),
    }
    return Model(
        backbone=backbone,
        head=siamese.head,
        distance="euclidean",
        threshold=float(_or_nan(doc["threshold"]["value"])) if threshold is None else float(threshold),
        slope=siamese.slope,
        intercept=siamese.intercept,
        description=description,
        source=source,
        face_rule=face,
    )


def _or_nan(value) -> float:
    """A recorded threshold; null (none was chosen) is NaN, which verify reports as "no threshold"."""
    return float("nan") if value is None else float(value)
