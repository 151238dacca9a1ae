"""The per-epoch training checkpoint: everything ``--resume`` needs to continue bit for bit.

One file (``RUN_DIR/checkpoint.pt``), written atomically after every epoch and read back with
``torch.load(weights_only=True)`` (no pickle of arbitrary objects): model and optimizer state, history,
best epoch so far, contrastive margin, torch's RNG state and the configuration that made it.
"""

from __future__ import annotations

import dataclasses
import io
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from facetwin.core import paths
from facetwin.core.validate import all_finite_tensors
from facetwin.errors import FacetwinError

# Options that must match between the checkpoint and the resumed run.
_KEYS = ("epoch", "model", "optimizer", "history", "best_epoch", "best_auc", "best_model", "margin", "torch_rng",
         "config")
MUST_MATCH = ("backbone", "tta", "head", "embedding_dim", "split", "val_fraction", "seed", "pairs", "loss", "optimizer")


@dataclass
class Checkpoint:
    """The state after ``epoch``."""

    epoch: int
    model: dict
    optimizer: dict
    history: list[dict]
    best: dict  # {"epoch", "auc", "state"}
    margin: float
    torch_rng: torch.Tensor


def save(path: Path, config, ckpt: Checkpoint) -> None:
    """Write ``ckpt`` atomically (temp file + rename); a model of NaN or infinite weights is refused."""
    bad = all_finite_tensors(ckpt.model)
    if bad is not None:
        raise FacetwinError(
            f"{path}: training diverged after epoch {ckpt.epoch} (tensor '{bad}' holds NaN or infinite values); "
            "nothing was saved; try a lower --lr."
        )
    state = {
        "epoch": ckpt.epoch,
        "model": ckpt.model,
        "optimizer": ckpt.optimizer,
        "history": json.dumps(ckpt.history),
        "best_epoch": ckpt.best["epoch"],
        "best_auc": float(ckpt.best["auc"]),
        "best_model": ckpt.best["state"],
        "margin": float(ckpt.margin),
        "torch_rng": ckpt.torch_rng,
        "pair_rng": json.dumps({"seed": config.seed, "rule": "numpy default_rng([seed, epoch, stream])"}),
        "config": json.dumps(dataclasses.asdict(config)),
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    paths.atomic_write_bytes(path, buffer.getvalue())


def _read(path: Path) -> dict:
    """The raw state of a checkpoint file; one sentence when it is unreadable, truncated or incomplete."""
    hint = "delete it, or train with --overwrite to start over"
    try:
        state = torch.load(path, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError, UnpicklingError, EOFError, zip errors...
        raise FacetwinError(
            f"{path}: not a readable training checkpoint ({type(exc).__name__}); {hint}."
        ) from None
    missing = [key for key in _KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise FacetwinError(f"{path}: incomplete training checkpoint (no '{missing[0]}'); {hint}.")
    for key in ("model", "best_model"):
        bad = all_finite_tensors(state[key]) if isinstance(state[key], dict) else "(not a state)"
        if bad is not None:
            raise FacetwinError(f"{path}: checkpoint tensor '{key}.{bad}' is damaged or not finite; {hint}.")
    return state


def load(path: Path, config) -> Checkpoint:
    """The checkpoint at ``path``; refused when it is damaged or was made with other options than ``config``."""
    state = _read(path)
    try:
        saved = json.loads(state["config"])
        history = json.loads(state["history"])
        epoch, best_epoch = int(state["epoch"]), int(state["best_epoch"])
        best_auc, margin = float(state["best_auc"]), float(state["margin"])
    except (TypeError, ValueError) as exc:
        raise FacetwinError(f"{path}: damaged training checkpoint ({exc}); delete it or use --overwrite.") from None
    if not isinstance(saved, dict) or not isinstance(history, list) or epoch < 0 or len(history) > epoch + 1:
        raise FacetwinError(f"{path}: damaged training checkpoint (inconsistent epochs); delete it or use --overwrite.")
    for key in MUST_MATCH:
        if saved.get(key) != getattr(config, key):
            raise FacetwinError(
                f"{path}: checkpoint was made with {key}={saved.get(key)!r}, not {getattr(config, key)!r}; "
                "resume with the same options or use a new --out."
            )
    return Checkpoint(
        epoch=epoch,
        model=state["model"],
        optimizer=state["optimizer"],
        history=history,
        best={"epoch": best_epoch, "auc": best_auc, "state": state["best_model"]},
        margin=margin,
        torch_rng=state["torch_rng"],
    )
