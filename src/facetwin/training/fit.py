"""The training loop of the Siamese head on cached trunk features.

The head trains on in-memory torch tensors: per epoch the pairs are drawn (the paper's rule, ``pairs.py``),
their index tensors are built once, and each step gathers 2 x batch feature rows, runs the shared head on
both sides in one matrix product, the Euclidean distance, the logistic unit and the loss.

Epoch 0 is the untouched head; with ``keep="best"`` the epoch with the best validation AUC on held-out
*people* is kept (epoch 0 included, so training never leaves a head that validates worse than its start).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from facetwin.errors import FacetwinError
from facetwin.evaluation.metrics import auc, balanced_accuracy, best_threshold
from facetwin.training import checkpoint as ckpt_io
from facetwin.training.batches import batch_pairs, person_batches
from facetwin.training.config import TrainConfig
from facetwin.training.pairs import PairPlan, epoch_rng
from facetwin.training.siamese import Siamese, bce_loss, build_head, contrastive_loss, euclidean, fit_logistic, log_loss
from facetwin.training.trainable import tail_parameters

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    model: Siamese
    history: list[dict]
    summary: dict
    thresholds: dict


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
        return euclidean(ea, eb).double().numpy()


def _evaluate(model: Siamese, x, a, b, y, precision) -> dict:
    d = pair_distances(model, x, a, b, precision)
    z = model.slope * d + model.intercept
    # Validation pairs hold more different-person pairs than same-person ones (every photo gets a negative, only
    # people with two photos a positive); the balanced rule keeps that share from moving the threshold.
    t = best_threshold(d, y, balanced=True)
    return {
        "loss": log_loss(z, y),
        "accuracy": float(np.mean((z > 0) == (y > 0.5))),
        "auc": auc(d, y),
        "best_threshold": t,
        "best_accuracy": balanced_accuracy(d, y > 0.5, t),
        "distances": d,
    }


def _val_metrics(model, x, plan: PairPlan, precision) -> dict:
    """``val_*`` keys of a history row (empty without validation pairs)."""
    if not plan.has_val:
        return {}
    v = _evaluate(model, x, plan.val_a, plan.val_b, plan.val_y, precision)
    return {f"val_{k}": v[k] for k in ("loss", "accuracy", "auc", "best_accuracy")}


def _optimizer(model: Siamese, c: TrainConfig) -> torch.optim.Optimizer:
    tail = {id(p) for p in tail_parameters(model.head)}
    head_params = [p for p in model.head.parameters() if p.requires_grad and id(p) not in tail]
    groups = [
        {"params": head_params, "weight_decay": c.weight_decay},
        {"params": list(model.logistic.parameters()), "weight_decay": 0.0},
    ]
    if tail:  # pretrained trunk layers: a lower learning rate, no decay toward zero
        groups.append({"params": tail_parameters(model.head), "weight_decay": 0.0, "lr": c.trunk_lr})
    cls = torch.optim.AdamW if c.optimizer == "adamw" else torch.optim.Adam
    try:
        return cls(groups, fused=True, lr=c.lr)
    except (RuntimeError, TypeError):  # pragma: no cover - builds without the fused CPU kernel
        return cls(groups, lr=c.lr)


def _state_copy(model: Siamese) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _start(model: Siamese, x, plan: PairPlan, c: TrainConfig) -> tuple[dict, float]:
    """Epoch 0: the logistic unit starts from the untouched head's distances (or Keras' random init)."""
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
    initial.update(_val_metrics(model, x, plan, c.precision))
    return initial, margin


def _train_epoch(model: Siamese, optimizer, x, plan: PairPlan, c: TrainConfig, epoch: int, margin: float) -> dict:
    """One pass over the epoch's pairs in Keras' per-epoch shuffled order; the history row (no val keys)."""
    t0 = time.perf_counter()
    a, b, y = plan.train_pairs(epoch)
    perm = epoch_rng(c.seed, epoch, stream=2).permutation(len(a))
    ta, tb, ty = torch.from_numpy(a[perm]), torch.from_numpy(b[perm]), torch.from_numpy(y[perm])
    if x.dim() == 3:  # a bank of augmented copies (row 0 clean): each pair side draws one copy
        va, vb = torch.from_numpy(epoch_rng(c.seed, epoch, stream=3).integers(0, x.shape[0], size=(2, len(a))))
        ta, tb = va * x.shape[1] + ta, vb * x.shape[1] + tb
        x = x.reshape(-1, x.shape[2])
    model.train()
    loss_sum = torch.zeros((), dtype=torch.float64)
    correct = torch.zeros((), dtype=torch.int64)
    bs = c.batch_size
    for s in range(0, len(a), bs):
        fa, fb, yb = x.index_select(0, ta[s : s + bs]), x.index_select(0, tb[s : s + bs]), ty[s : s + bs]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=c.precision == "bf16"):
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
    n = max(len(a), 1)
    return {
        "epoch": epoch,
        "loss": float(loss_sum) / n,
        "accuracy": float(correct) / n,
        "pairs": int(len(a)),
        "seconds": time.perf_counter() - t0,
    }


def _train_epoch_batches(model: Siamese, optimizer, x, plan: PairPlan, c: TrainConfig, epoch: int,
                         margin: float) -> dict:
    """One epoch of ``pairs="batch"`` (``batches.py``): each training image embedded once, its pairs made in its
    batch; the history row (no val keys)."""
    t0 = time.perf_counter()
    rng = epoch_rng(c.seed, epoch, stream=4)
    codes = np.unique(plan.labels, return_inverse=True)[1]
    if x.dim() == 3:  # a bank of augmented copies (row 0 clean): each image draws one copy per epoch
        copies = torch.from_numpy(rng.integers(0, x.shape[0], size=x.shape[1]))
    model.train()
    loss_sum, correct, pairs = 0.0, 0, 0
    for rows in person_batches(plan.labels, plan.train_idx, 2 * c.batch_size, rng):
        index = torch.from_numpy(rows)
        a, b, y = (torch.from_numpy(v) for v in batch_pairs(codes[rows], rng))
        if not len(y):
            continue
        feats = x[copies[index], index] if x.dim() == 3 else x.index_select(0, index)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=c.precision == "bf16"):
            e = model.embed(feats).float()
        d = euclidean(e[a], e[b])
        z = model.logit(d)
        loss = bce_loss(z, y)
        if c.loss == "contrastive":
            loss = contrastive_loss(d, y, margin) + bce_loss(model.logit(d.detach()), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += float(loss.detach()) * len(y)
        correct += int(((z.detach() > 0) == (y > 0.5)).sum())
        pairs += len(y)
    model.eval()
    n = max(pairs, 1)
    return {"epoch": epoch, "loss": loss_sum / n, "accuracy": correct / n, "pairs": pairs,
            "seconds": time.perf_counter() - t0}


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
    augmented: np.ndarray | None = None,
) -> FitResult:
    """Train a Siamese head on feature rows with person ``labels``; see the module docstring.

    ``augmented`` ``(V, N, D)``: features of ``V`` augmented copies of every row (``training/augment.py``);
    training pairs then draw the clean row or a copy, validation stays clean.
    """
    c = config.resolved()
    x = torch.as_tensor(np.ascontiguousarray(features, dtype=np.float32))
    labels = np.asarray(labels)
    plan = PairPlan(labels, c)
    torch.manual_seed(c.seed)
    model = Siamese(build_head(backbone, c.head, c.embedding_dim, seed=c.seed, train_norms=c.train_norms))
    full = model
    model, x, bank = _prepare(model, x, augmented, c)
    start_time = time.perf_counter()
    initial, margin = _start(model, x, plan, c)
    history: list[dict] = [initial]
    optimizer = _optimizer(model, c)
    best = {"epoch": 0, "auc": initial.get("val_auc", -1.0), "state": _state_copy(model)}
    initial_state = best["state"]  # epoch 0: the frozen backbone itself (deterministic, so also valid on resume)
    start_epoch = 1
    ckpt_path = Path(checkpoint) if checkpoint else None
    if resume and ckpt_path is not None and ckpt_path.exists():
        saved = ckpt_io.load(ckpt_path, c)
        try:
            model.load_state_dict(saved.model)
            optimizer.load_state_dict(saved.optimizer)
        except (RuntimeError, ValueError, KeyError, TypeError):
            raise FacetwinError(f"{ckpt_path}: checkpoint does not fit this head; delete it or --overwrite.") from None
        history, best, margin = saved.history, saved.best, saved.margin
        torch.set_rng_state(saved.torch_rng)
        start_epoch = saved.epoch + 1
        log.info("resuming %s after epoch %d", ckpt_path.parent, saved.epoch)
    elif resume:
        log.info("no checkpoint to resume from: starting at epoch 1")

    bar = None
    if progress and start_epoch <= c.epochs:
        from tqdm import tqdm

        bar = tqdm(total=c.epochs, initial=start_epoch - 1, desc="epochs", unit="epoch", dynamic_ncols=True,
                   disable=None)
    try:
        for epoch in range(start_epoch, c.epochs + 1):
            train_epoch = _train_epoch_batches if c.pairs == "batch" else _train_epoch
            row = train_epoch(model, optimizer, x if bank is None else bank, plan, c, epoch, margin)
            row.update(_val_metrics(model, x, plan, c.precision))
            if row.get("val_auc", -math.inf) > best["auc"]:
                best = {"epoch": epoch, "auc": row["val_auc"], "state": _state_copy(model)}
            history.append(row)
            if ckpt_path is not None:
                state = ckpt_io.Checkpoint(
                    epoch, model.state_dict(), optimizer.state_dict(), history, best, margin, torch.get_rng_state()
                )
                ckpt_io.save(ckpt_path, c, state)
            if bar is not None:
                bar.set_postfix(
                    {k: f"{row[k]:.4f}" for k in ("loss", "accuracy", "val_accuracy", "val_auc") if k in row}
                )
                bar.update(1)
            if on_epoch is not None:
                on_epoch(row)
    finally:
        if bar is not None:
            bar.close()
    if c.adapt and plan.has_val and best["epoch"] > 0:
        kept_row = next(h for h in history if h["epoch"] == best["epoch"])
        if kept_row.get("val_best_accuracy", 1.0) < history[0].get("val_best_accuracy", 0.0):
            best = {"epoch": 0, "auc": history[0].get("val_auc"), "state": initial_state}  # better AUC, worse accuracy
    result = _finish(model, x, labels, plan, c, history, best, margin, time.perf_counter() - start_time)
    result.model = full.eval()  # shares its parameters with the model trained (the same one without a frozen tail)
    return result


def _prepare(model: Siamese, x: torch.Tensor, augmented, c: TrainConfig):
    """``(model, x, bank)`` to train: the bank of augmented rows (row 0 clean) or None; a frozen tail run once."""
    bank = None
    if augmented is not None and len(augmented):
        bank = torch.cat([x[None], torch.as_tensor(np.ascontiguousarray(augmented, dtype=np.float32))])
    if c.trunk_lr == 0 and getattr(model.head, "has_tail", False):
        if bank is not None:
            bank = torch.stack([_run_frozen_tail(model, v)[0] for v in bank])
        x, model = _run_frozen_tail(model, x)
    return model, x, bank


def _run_frozen_tail(model: Siamese, x: torch.Tensor, chunk: int = 256) -> tuple[torch.Tensor, Siamese]:
    """Trunk layers after a cut kept frozen (``trunk_lr = 0``): run them once on every row, then train the head
    alone on their output; the returned network shares the head and logistic unit of ``model``."""
    tail = model.head[0].eval().requires_grad_(False)
    with torch.inference_mode():
        out = torch.cat([tail(x[s : s + chunk]) for s in range(0, len(x), chunk)]) if len(x) else x
    inner = Siamese(model.head[1:])
    inner.logistic = model.logistic
    return out.clone(), inner


def _finish(model, x, labels, plan: PairPlan, c: TrainConfig, history, best, margin, seconds) -> FitResult:
    """Keep the chosen epoch; the decision thresholds and the training summary."""
    final_epoch = history[-1]["epoch"]
    kept = final_epoch
    if c.keep == "best" and plan.has_val:
        model.load_state_dict(best["state"])
        kept = best["epoch"]
    model.eval()
    train_rows = plan.train_idx if c.split == "person" else np.arange(len(labels))
    thresholds = {"logistic": model.logistic_threshold(), "used": "logistic"}
    summary: dict = {
        "epochs_run": final_epoch,
        "kept_epoch": kept,
        "keep_rule": c.keep if plan.has_val else "final",
        "train_seconds": seconds,
        "epoch_seconds": float(np.mean([h["seconds"] for h in history[1:]])) if len(history) > 1 else None,
        "train_images": int(len(train_rows)),
        "train_people": int(len(np.unique(labels[train_rows]))),
        "contrastive_margin": margin if c.loss == "contrastive" else None,
    }
    if plan.has_val:
        v = _evaluate(model, x, plan.val_a, plan.val_b, plan.val_y, c.precision)
        thresholds.update({"validation_best_accuracy": v["best_threshold"], "used": "validation_best_accuracy"})
        val_rows = np.unique(np.concatenate([plan.val_a, plan.val_b]))
        summary.update(
            {
                "val_pairs": int(len(plan.val_y)),
                "val_people": int(len(np.unique(labels[val_rows]))),
                "val_accuracy": v["accuracy"],
                "val_accuracy_at_threshold": v["best_accuracy"],
                "val_auc": v["auc"],
                "val_loss": v["loss"],
                "initial_val_auc": history[0].get("val_auc"),
                "initial_val_accuracy_at_threshold": history[0].get("val_best_accuracy"),
            }
        )
    thresholds["value"] = thresholds[thresholds["used"]]
    return FitResult(model=model, history=history, summary=summary, thresholds=thresholds)
