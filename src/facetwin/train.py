"""Siamese transfer learning on cached trunk features: ``facetwin.train(DATA_DIR, out=RUN_DIR, ...)``.

The frozen trunk runs once per image (``features.extract_features``, cached across runs); the head then
trains on in-memory torch tensors: per epoch the pairs are drawn (the paper's rule, ``pairs.py``), their
index tensors are built once, and each step gathers 2 x batch feature rows, runs the shared head on both
sides in one matrix product, the Euclidean distance, the logistic unit and the loss.

Defaults (``TrainConfig``): the paper's model for ``vggface`` (fc8 + tanh, BCE, Adam 1e-3, batch 32,
60 epochs); for ``sface`` a residual head that starts as the backbone itself (see ``siamese.py``), AdamW
whose weight decay pulls it back toward the backbone, and the epoch with the best validation AUC on
held-out *people* is kept (epoch 0, the untouched backbone, is a candidate, so training never leaves a
head that validates worse than its starting point). ``preset="paper"`` sets the paper's hyper-parameters.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import paths
from .dataset import load_dataset
from .errors import FacetwinError
from .pairs import draw_pairs, epoch_rng
from .siamese import (
    Siamese,
    auc,
    bce_loss,
    best_threshold,
    build_head,
    contrastive_loss,
    fit_logistic,
    log_loss,
)
from .splits import keras_split_at, split_people
from .train_config import TrainConfig


@dataclass
class FitResult:
    model: Siamese
    history: list[dict]
    summary: dict
    thresholds: dict


class PairPlan:
    """Which pairs train and validate in each epoch (split rule + pair rule)."""

    def __init__(self, labels: np.ndarray, c: TrainConfig):
        self.labels = labels
        self.c = c
        n = len(labels)
        self.val_a = self.val_b = self.val_y = None
        if c.split == "person":
            val_mask = split_people(labels, c.val_fraction, c.seed) if c.val_fraction > 0 else np.zeros(n, bool)
            self.train_idx = np.flatnonzero(~val_mask)
            self.val_idx = np.flatnonzero(val_mask)
            if len(np.unique(labels[self.train_idx])) < 2:
                raise FacetwinError("training needs at least two people outside the validation split.")
            if len(self.val_idx) and len(np.unique(labels[self.val_idx])) >= 2:
                # Several draws of the paper's rule (duplicates removed): more validation pairs, less noise in
                # the epoch choice; drawn once, so every epoch is judged on the same pairs.
                val_labels = labels[self.val_idx]
                draws = [draw_pairs(val_labels, epoch_rng(c.seed, 0, stream=1 + k)) for k in range(c.val_draws)]
                a, b, y = (np.concatenate(z) for z in zip(*draws, strict=True))
                key = np.minimum(a, b) * len(labels) + np.maximum(a, b)
                _, first = np.unique(key, return_index=True)
                first = np.sort(first)
                self.val_a, self.val_b, self.val_y = self.val_idx[a[first]], self.val_idx[b[first]], y[first]
        else:  # paper: Keras validation_split on the pair array of the (first) draw
            if len(np.unique(labels)) < 2:
                raise FacetwinError("training needs at least two people.")
            a, b, y = draw_pairs(labels, epoch_rng(c.seed, 1))
            self.split_at = keras_split_at(len(a), c.val_fraction)
            if c.val_fraction > 0:
                self.val_a, self.val_b, self.val_y = a[self.split_at :], b[self.split_at :], y[self.split_at :]
            self.first = (a[: self.split_at], b[: self.split_at], y[: self.split_at])

    def train_pairs(self, epoch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        c = self.c
        draw_epoch = 1 if c.pairs == "fixed" else epoch
        if c.split == "person":
            a, b, y = draw_pairs(self.labels[self.train_idx], epoch_rng(c.seed, draw_epoch))
            return self.train_idx[a], self.train_idx[b], y
        if draw_epoch == 1:
            return self.first
        a, b, y = draw_pairs(self.labels, epoch_rng(c.seed, draw_epoch))
        at = keras_split_at(len(a), c.val_fraction)
        return a[:at], b[:at], y[:at]

    @property
    def has_val(self) -> bool:
        return self.val_a is not None and len(self.val_a) > 0 and 0 < self.val_y.sum() < len(self.val_y)


def _embed_rows(model: Siamese, x: torch.Tensor, rows: np.ndarray, precision: str, chunk: int = 1024) -> dict:
    """Embeddings of the feature rows ``rows`` (unique), as a tensor plus a row -> position map."""
    uniq = np.unique(rows)
    parts = []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        for s in range(0, len(uniq), chunk):
            parts.append(model.embed(x[torch.from_numpy(uniq[s : s + chunk])]).float())
    emb = torch.cat(parts) if parts else torch.zeros(0)
    pos = np.full(int(rows.max()) + 1 if len(rows) else 0, -1, dtype=np.int64)
    pos[uniq] = np.arange(len(uniq))
    return {"emb": emb, "pos": pos}


def pair_distances(
    model: Siamese, x: torch.Tensor, a: np.ndarray, b: np.ndarray, precision: str = "fp32"
) -> np.ndarray:
    """Distances of pairs ``(a[i], b[i])`` of feature rows under ``model`` (each image embedded once)."""
    if len(a) == 0:
        return np.zeros(0)
    e = _embed_rows(model, x, np.concatenate([a, b]), precision)
    ea = e["emb"][torch.from_numpy(e["pos"][a])]
    eb = e["emb"][torch.from_numpy(e["pos"][b])]
    with torch.inference_mode():
        from .siamese import euclidean

        return euclidean(ea, eb).double().numpy()


def _evaluate(model: Siamese, x, a, b, y, precision) -> dict:
    d = pair_distances(model, x, a, b, precision)
    z = model.slope * d + model.intercept
    t, acc_best = best_threshold(d, y)
    return {
        "loss": log_loss(z, y),
        "accuracy": float(np.mean((z > 0) == (y > 0.5))),
        "auc": auc(d, y),
        "best_threshold": t,
        "best_accuracy": acc_best,
        "distances": d,
    }


def _optimizer(model: Siamese, c: TrainConfig) -> torch.optim.Optimizer:
    head_params = [p for p in model.head.parameters() if p.requires_grad]
    groups = [
        {"params": head_params, "weight_decay": c.weight_decay},
        {"params": list(model.logistic.parameters()), "weight_decay": 0.0},
    ]
    cls = torch.optim.AdamW if c.optimizer == "adamw" else torch.optim.Adam
    kwargs = {"lr": c.lr}
    try:
        return cls(groups, fused=True, **kwargs)
    except (RuntimeError, TypeError):  # pragma: no cover - builds without the fused CPU kernel
        return cls(groups, **kwargs)


def _state_copy(model: Siamese) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def fit(
    features: np.ndarray | torch.Tensor,
    labels: np.ndarray,
    backbone,
    config: TrainConfig,
    *,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    on_epoch=None,
) -> FitResult:
    """Train a Siamese head on feature rows with person ``labels``; see the module docstring."""
    c = config.resolved()
    torch.set_num_threads(max(1, int(c.threads)))
    torch.set_flush_denormal(True)
    x = torch.as_tensor(np.ascontiguousarray(features, dtype=np.float32))
    labels = np.asarray(labels)
    plan = PairPlan(labels, c)

    torch.manual_seed(c.seed)
    model = Siamese(build_head(backbone, c.head, c.embedding_dim, seed=c.seed))
    start_time = time.perf_counter()

    # Epoch 0: the untouched head. Start the logistic unit from its distances (or Keras' random init).
    a0, b0, y0 = plan.train_pairs(1)
    d0 = pair_distances(model, x, a0, b0, c.precision)
    if c.logistic_init == "fit":
        model.set_logistic(*fit_logistic(d0, y0))
    else:
        limit = math.sqrt(6.0 / 2.0)
        model.set_logistic(float(torch.empty(()).uniform_(-limit, limit)), 0.0)
    margin = c.margin if c.margin is not None else float(np.mean(d0[y0 < 0.5])) if (y0 < 0.5).any() else 1.0
    z0 = model.slope * d0 + model.intercept
    initial = {"epoch": 0, "loss": log_loss(z0, y0), "accuracy": float(np.mean((z0 > 0) == (y0 > 0.5)))}
    if plan.has_val:
        v = _evaluate(model, x, plan.val_a, plan.val_b, plan.val_y, c.precision)
        initial.update({f"val_{k}": v[k] for k in ("loss", "accuracy", "auc", "best_accuracy")})
    history: list[dict] = [initial]
    optimizer = _optimizer(model, c)
    best = {"epoch": 0, "auc": initial.get("val_auc", -1.0), "state": _state_copy(model)}
    start_epoch = 1

    ckpt_path = Path(checkpoint) if checkpoint else None
    if resume and ckpt_path is not None and ckpt_path.exists():
        state = torch.load(ckpt_path, weights_only=True)
        saved = json.loads(state["config"])
        for key in ("backbone", "head", "embedding_dim", "split", "val_fraction", "seed", "pairs", "loss", "optimizer"):
            if saved.get(key) != getattr(c, key):
                raise FacetwinError(
                    f"{ckpt_path}: checkpoint was made with {key}={saved.get(key)!r}, not {getattr(c, key)!r}; "
                    "resume with the same options or use a new --out."
                )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history = json.loads(state["history"])
        best = {"epoch": int(state["best_epoch"]), "auc": float(state["best_auc"]), "state": state["best_model"]}
        margin = float(state["margin"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch = int(state["epoch"]) + 1
        if progress:
            print(f"resuming {ckpt_path.parent} after epoch {start_epoch - 1}")
    elif resume and progress:
        print("no checkpoint to resume from: starting at epoch 1")

    bar = None
    if progress and start_epoch <= c.epochs:
        from tqdm import tqdm

        bar = tqdm(total=c.epochs, initial=start_epoch - 1, desc="epochs", unit="epoch", dynamic_ncols=True)
    autocast = c.precision == "bf16"
    try:
        for epoch in range(start_epoch, c.epochs + 1):
            t0 = time.perf_counter()
            a, b, y = plan.train_pairs(epoch)
            perm = epoch_rng(c.seed, epoch, stream=2).permutation(len(a))  # Keras' per-epoch shuffle
            ta = torch.from_numpy(a[perm])
            tb = torch.from_numpy(b[perm])
            ty = torch.from_numpy(y[perm])
            model.train()
            loss_sum = torch.zeros((), dtype=torch.float64)
            correct = torch.zeros((), dtype=torch.int64)
            bs = c.batch_size
            for s in range(0, len(a), bs):
                fa = x.index_select(0, ta[s : s + bs])
                fb = x.index_select(0, tb[s : s + bs])
                yb = ty[s : s + bs]
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                    d, z = model(fa, fb)
                if c.loss == "bce":
                    loss = bce_loss(z, yb)
                else:
                    loss = contrastive_loss(d, yb, margin) + bce_loss(model.logit(d.detach()), yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    loss_sum += loss.detach().double() * len(yb)
                    correct += ((z.detach() > 0) == (yb > 0.5)).sum()
            model.eval()
            row = {
                "epoch": epoch,
                "loss": float(loss_sum) / max(len(a), 1),
                "accuracy": float(correct) / max(len(a), 1),
                "pairs": int(len(a)),
                "seconds": time.perf_counter() - t0,
            }
            if plan.has_val:
                v = _evaluate(model, x, plan.val_a, plan.val_b, plan.val_y, c.precision)
                row.update({f"val_{k}": v[k] for k in ("loss", "accuracy", "auc", "best_accuracy")})
                if v["auc"] > best["auc"]:
                    best = {"epoch": epoch, "auc": v["auc"], "state": _state_copy(model)}
            history.append(row)
            if ckpt_path is not None:
                _save_checkpoint(ckpt_path, c, epoch, model, optimizer, history, best, margin)
            if bar is not None:
                post = {"loss": f"{row['loss']:.4f}", "acc": f"{row['accuracy']:.4f}"}
                if "val_accuracy" in row:
                    post.update({"val_acc": f"{row['val_accuracy']:.4f}", "val_auc": f"{row['val_auc']:.4f}"})
                bar.set_postfix(post)
                bar.update(1)
            if on_epoch is not None:
                on_epoch(row)
    finally:
        if bar is not None:
            bar.close()

    final_epoch = history[-1]["epoch"]
    if c.keep == "best" and plan.has_val:
        model.load_state_dict(best["state"])
        kept = best["epoch"]
    else:
        kept = final_epoch
    model.eval()

    thresholds = {"logistic": model.logistic_threshold()}
    summary: dict = {
        "epochs_run": final_epoch,
        "kept_epoch": kept,
        "keep_rule": c.keep if plan.has_val else "final",
        "train_seconds": time.perf_counter() - start_time,
        "train_images": int(len(plan.train_idx)) if c.split == "person" else int(len(labels)),
        "train_people": int(len(np.unique(labels[plan.train_idx])))
        if c.split == "person"
        else int(len(np.unique(labels))),
        "contrastive_margin": margin if c.loss == "contrastive" else None,
    }
    if plan.has_val:
        v = _evaluate(model, x, plan.val_a, plan.val_b, plan.val_y, c.precision)
        thresholds["validation_best_accuracy"] = v["best_threshold"]
        thresholds["used"] = "validation_best_accuracy"
        summary.update(
            {
                "val_pairs": int(len(plan.val_y)),
                "val_people": int(len(np.unique(labels[np.unique(np.concatenate([plan.val_a, plan.val_b]))]))),
                "val_accuracy": v["accuracy"],
                "val_accuracy_at_threshold": v["best_accuracy"],
                "val_auc": v["auc"],
                "val_loss": v["loss"],
                "initial_val_auc": initial.get("val_auc"),
                "initial_val_accuracy_at_threshold": initial.get("val_best_accuracy"),
            }
        )
    else:
        thresholds["used"] = "logistic"
    thresholds["value"] = thresholds[thresholds["used"]]
    return FitResult(model=model, history=history, summary=summary, thresholds=thresholds)


def _save_checkpoint(path: Path, c, epoch, model, optimizer, history, best, margin) -> None:
    state = {
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "history": json.dumps(history),
        "best_epoch": best["epoch"],
        "best_auc": float(best["auc"]),
        "best_model": best["state"],
        "margin": float(margin),
        "torch_rng": torch.get_rng_state(),
        "pair_rng": json.dumps({"seed": c.seed, "rule": "numpy default_rng([seed, epoch, stream])"}),
        "config": json.dumps(dataclasses.asdict(c)),
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    paths.atomic_write_bytes(path, buffer.getvalue())


# ------------------------------------------------------------------------------------------ public API


def make_backbone(name: str, weights: str | None = None):
    """The backbone of a run (``weights`` is the vggface weights file, when given)."""
    from .backbones import get_backbone

    options = {"weights": weights} if weights else {}
    return get_backbone(name, **options)


def train(
    data_dir: str | Path,
    out: str | Path,
    *,
    backbone: str = "sface",
    weights: str | None = None,
    preset: str | None = None,
    resume: bool = False,
    progress: bool = True,
    **options,
) -> dict:
    """Train a Siamese head on a folder-per-person ``data_dir`` and write the run directory ``out``.

    ``options`` are the fields of :class:`TrainConfig` (epochs, batch_size, lr, split, val_fraction, seed,
    pairs, embedding_dim, loss, no_face, ...). Returns the training summary (also in ``model.json``).
    """
    from .artifact import save_run

    unknown = set(options) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise TypeError(f"unknown training option(s): {', '.join(sorted(unknown))}")
    config = TrainConfig(backbone=backbone, weights=weights, preset=preset, **options).resolved()
    out = Path(out)
    if (out / "model.json").exists() and not resume:
        raise FacetwinError(f"{out}: already holds a trained model; choose another --out or pass --resume.")
    out.mkdir(parents=True, exist_ok=True)
    bb = make_backbone(config.backbone, config.weights)
    data = load_dataset(data_dir, bb, no_face=config.no_face, progress=progress)
    if progress:
        rep = data.report()
        print(
            f"{rep['images']} images of {rep['people']} people "
            f"({data.extraction['computed']} computed, {data.extraction['cached']} from the feature cache); "
            f"{rep['unreadable']} unreadable, {rep['no_face']} without a face ({rep['no_face_action']})"
        )
        for message in rep["unreadable_first"]:
            print(f"  unreadable: {message}")
        for f in rep["no_face_first"]:
            print(f"  no face: {f}")
    result = fit(
        data.features, data.labels, bb, config, checkpoint=out / "checkpoint.pt", resume=resume, progress=progress
    )
    summary = dict(result.summary)
    summary["data"] = {"dir": str(Path(data_dir).resolve()), **data.report(), "extraction": data.extraction}
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
