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
from facetwin.errors import FacetwinError

# Options that must match between the checkpoint and the resumed run.
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
    """Write ``ckpt`` atomically (temp file + rename)."""
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


def load(path: Path, config) -> Checkpoint:
    """The checkpoint at ``path``; refused when it was made with other options than ``config``."""
    state = torch.load(path, weights_only=True)
    saved = json.loads(state["config"])
    for key in MUST_MATCH:
        if saved.get(key) != getattr(config, key):
            raise FacetwinError(
                f"{path}: checkpoint was made with {key}={saved.get(key)!r}, not {getattr(config, key)!r}; "
                "resume with the same options or use a new --out."
            )
    return Checkpoint(
        epoch=int(state["epoch"]),
        model=state["model"],
        optimizer=state["optimizer"],
        history=json.loads(state["history"]),
        best={"epoch": int(state["best_epoch"]), "auc": float(state["best_auc"]), "state": state["best_model"]},
        margin=float(state["margin"]),
        torch_rng=state["torch_rng"],
    )
