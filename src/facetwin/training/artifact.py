"""A trained model on disk: ``model.json`` + ``head.safetensors`` (+ ``metrics.json``, ``curves.png``).

``save_run`` writes every file atomically; ``load_siamese(run_dir)`` rebuilds the backbone recorded in
``model.json`` (refusing a backbone whose ``describe()`` differs, e.g. other weights) and the trained
Siamese network (head + logistic unit); ``facetwin.loading.load`` turns that into a ``Model``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from facetwin.backbones.base import identity
from facetwin.backbones.registry import make_backbone
from facetwin.core import paths
from facetwin.core.jsonsafe import canonical_json, dumps
from facetwin.core.validate import all_finite_tensors
from facetwin.errors import FacetwinError
from facetwin.training.curves import plot_curves
from facetwin.training.features import face_policy
from facetwin.training.siamese import Siamese, build_head
from facetwin.training.trainable import cut_backbone

FORMAT = "facetwin-run"
VERSION = 1


def _paper_deviations(config) -> list[str]:
    notes = []
    if config.split != "paper":
        notes.append("validation split by person (the paper: Keras validation_split=0.2 on the pair array)")
    if config.logistic_init == "fit":
        notes.append("logistic unit initialised by fitting it to the initial distances (Keras: glorot-uniform)")
    if config.pairs != "fixed":
        notes.append("pairs drawn afresh every epoch (the paper: one draw)")
    if config.keep != "final":
        notes.append("kept the epoch with the best validation AUC (the paper: the last epoch)")
    if config.precision == "bf16":
        notes.append("head matrix products in bfloat16 autocast (float32 master weights and Adam state)")
    if config.backbone != "vggface":
        notes.append(f"backbone {config.backbone} with a {config.head} head (the paper: VGG-Face fc8 + tanh)")
    return notes


def _trainable_trunk(model, config) -> dict | None:
    """The trunk layers after the cut that trained with the head (saved in head.safetensors as ``head.0.*``)."""
    if config.trainable_from is None:
        return None
    tail = model.head[0]
    return {
        "from": config.trainable_from,
        "lr": config.trunk_lr,
        "parameters": int(sum(p.numel() for p in tail.parameters())),
        "frozen": config.trunk_lr == 0,
    }


def save_run(run_dir, *, backbone, model, config, history, summary, thresholds) -> None:
    """Write ``model.json``, ``head.safetensors``, ``metrics.json`` and ``curves.png`` into ``run_dir``."""
    run_dir = Path(run_dir)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    bad = all_finite_tensors(state)
    if bad is not None:
        raise FacetwinError(
            f"{run_dir}: training produced a model whose tensor '{bad}' holds NaN or infinite values; nothing was "
            "saved (try a lower --lr, or check the training data)."
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    paths.atomic_write_bytes(run_dir / "head.safetensors", save(state))
    describe = backbone.describe()
    with torch.inference_mode():
        out_dim = int(model.embed(torch.zeros(1, int(backbone.feature_dim))).shape[1])
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "backbone": {
            "name": config.backbone,
            "options": {
                **({"weights": str(Path(config.weights).resolve())} if config.weights else {}),
                **({"tta": config.tta} if config.tta != "none" else {}),
            },
            "describe": describe,
            "weights_sha256": describe.get("weights_sha256") or describe.get("sha256"),
        },
        "preprocessing": {
            "describe": describe.get("preprocess", describe.get("preprocessing")),
            **face_policy(backbone, config.face),
        },
        "head": {
            "kind": config.head,
            "embedding_dim": config.embedding_dim,
            "output_dim": out_dim,
            "trainable_parameters": int(sum(p.numel() for p in model.head.parameters() if p.requires_grad)),
            "trainable_trunk": _trainable_trunk(model, config),
            "distance": "euclidean",
            "distance_formula": "sqrt(max(sum((a-b)^2), 1e-7))",
            "logistic": {"slope": model.slope, "intercept": model.intercept, "formula": "sigmoid(slope*d + intercept)"},
        },
        "threshold": {
            "value": thresholds["value"],
            "used": thresholds["used"],
            "logistic": thresholds.get("logistic"),
            "validation_best_accuracy": thresholds.get("validation_best_accuracy"),
            "rule": "same person when distance <= value",
        },
        "preset": config.preset,
        "hyperparameters": dataclasses.asdict(config),
        "paper_deviations": _paper_deviations(config),
        "training": summary,
    }
    paths.atomic_write_text(run_dir / "model.json", dumps(doc))
    final = {k: v for k, v in summary.items() if k.startswith("val_") or k.startswith("initial_")}
    metrics = {"epochs": history, "final": final, "kept_epoch": summary.get("kept_epoch")}
    paths.atomic_write_text(run_dir / "metrics.json", dumps(metrics))
    title = f"{config.backbone} · {config.head} head · {config.loss} · split by {config.split}"
    plot_curves(history, run_dir / "curves.png", title=title, kept_epoch=summary.get("kept_epoch"))


def read_model_json(run_dir) -> dict:
    path = Path(run_dir) / "model.json"
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise FacetwinError(f"{path}: no such file (not a facetwin run directory).") from None
    except (OSError, ValueError) as exc:
        raise FacetwinError(f"{path}: not readable JSON ({exc}).") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise FacetwinError(f"{path}: not a facetwin model description.")
    shapes = {"hyperparameters": dict, "backbone": dict, "head": dict, "threshold": dict}
    bad = [key for key, kind in shapes.items() if not isinstance(doc.get(key), kind)]
    backbone = doc.get("backbone") or {}
    if not bad and not (isinstance(backbone.get("name"), str) and isinstance(backbone.get("options"), dict)
                        and isinstance(backbone.get("describe"), dict)):
        bad = ["backbone"]
    if not bad and not isinstance(doc["hyperparameters"].get("head"), str):
        bad = ["hyperparameters.head"]
    value = doc.get("threshold", {}).get("value") if not bad else None
    if not bad and value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
        bad = ["threshold"]
    if bad:
        raise FacetwinError(f"{path}: damaged model description ('{bad[0]}' is missing or malformed).")
    return doc


def load_siamese(run_dir, backbone=None):
    """``(siamese, model_json, backbone)`` of a run directory."""
    run_dir = Path(run_dir)
    doc = read_model_json(run_dir)
    hp = doc["hyperparameters"]
    if backbone is None:
        options = doc["backbone"]["options"]
        backbone = make_backbone(doc["backbone"]["name"], options.get("weights"), options.get("tta", "none"))
    if hp.get("trainable_from") is not None and not hasattr(backbone, "make_tail"):
        backbone = cut_backbone(backbone, hp["trainable_from"])  # frozen part; the trained layers load below
    if canonical_json(identity(backbone.describe())) != canonical_json(identity(doc["backbone"]["describe"])):
        raise FacetwinError(
            f"{run_dir / 'model.json'}: the model was trained on a different {doc['backbone']['name']} backbone "
            "(weights or preprocessing differ)."
        )
    try:
        model = Siamese(build_head(backbone, hp["head"], hp.get("embedding_dim"), seed=hp.get("seed", 0)))
    except (ValueError, TypeError) as exc:
        raise FacetwinError(f"{run_dir / 'model.json'}: damaged model description ({exc}).") from None
    path = run_dir / "head.safetensors"
    try:
        state = load_file(str(path))
    except FileNotFoundError:
        raise FacetwinError(f"{path}: no such file.") from None
    except Exception as exc:  # safetensors raises its own error types
        raise FacetwinError(f"{path}: not a readable safetensors file ({exc}).") from None
    bad = all_finite_tensors(state)
    if bad is not None:
        raise FacetwinError(f"{path}: tensor '{bad}' holds NaN or infinite values; this model cannot be used.")
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise FacetwinError(f"{path}: tensors do not match the head described in model.json.") from None
    model.eval()
    return model, doc, backbone
