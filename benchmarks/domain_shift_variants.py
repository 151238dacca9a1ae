"""Variants of the fine-tuned row of ``domain_shift.py`` that were measured and not adopted (dlib, cut ``fc``).

On the shifted copies that ``benchmarks/domain_shift.py`` built and whose features it cached (run it first with
the same ``--seed``), with its folds (the people of fold k are held out; validation people are 20 % of the rest,
drawn by the training seed; the threshold is the best-accuracy distance on them), for each shift:

- ``frozen``: dlib's own embedding;
- ``head s``: the Siamese pair head (``training.fit``, the ``head`` row) trained with seed ``s``, for each seed;
- ``ensemble``: the embeddings of those heads concatenated (each L2-normalised), one threshold;
- ``teacher``: needs the clean photos of the training people: dlib's fc layer re-fitted by ridge regression
  (``--ridge``) so that each shifted training photo's embedding matches dlib's embedding of the same photo
  before the shift, then the pair head (first training seed) on top. Every figure printed.

Each row's threshold comes from the validation people of its own seed (the first seed for ``frozen``, ``ensemble``
and ``teacher``); the share of errors removed is always counted against ``frozen``, so for ``head s`` with
``s`` other than the first seed it differs a little from ``domain_shift.py --train-seeds``, which compares each
seed with the frozen backbone on that seed's validation people.

Usage: ``python benchmarks/domain_shift_variants.py --shifts mask,nir,jpeg,lowres [--train-seeds 0,1,2,3,4]``
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def _features(bb, folder: Path):
    from facetwin.training.dataset import list_images
    from facetwin.training.features import extract_features

    files, _ = list_images(folder / "images")
    fs = extract_features(bb, files, progress=False)
    rel = [str(Path(f).relative_to(folder / "images")) for f in fs.files]
    return rel, torch.from_numpy(np.nan_to_num(fs.features)), fs.ok


def _ridge(x: torch.Tensor, target: torch.Tensor, lam: float):
    """``(W, b)`` minimising ``|x W + b - target|^2 + lam |(W, b)|^2``."""
    x1 = torch.cat([x, torch.ones(len(x), 1)], 1).double()
    w = torch.linalg.solve(x1.T @ x1 + lam * torch.eye(x1.shape[1], dtype=torch.float64), x1.T @ target.double())
    return w[:-1].float(), w[-1].float()


def run_shift(shift: str, root: Path, args, base, bb) -> dict:
    from facetwin.evaluation.metrics import auc, best_threshold
    from facetwin.evaluation.pairs_file import read_pairs
    from facetwin.training.config import TrainConfig
    from facetwin.training.fit import fit
    from facetwin.training.pairs import PairPlan
    from facetwin.training.siamese import euclidean

    rel, xs, ok = _features(bb, root / shift)
    rel_c, xc, ok_c = _features(bb, root / "clean")
    if rel != rel_c:
        raise SystemExit(f"{root / shift} and {root / 'clean'} do not hold the same photos; rerun domain_shift.py.")
    tail = bb.make_tail().eval()
    with torch.inference_mode():
        desc, teacher = tail(xs), F.normalize(tail(xc), dim=1)
    row = {r: i for i, r in enumerate(rel)}
    pairs = read_pairs(root / shift / "pairs.txt").pairs
    pa, pb = np.array([row[p.a] for p in pairs]), np.array([row[p.b] for p in pairs])
    same, fold = np.array([p.same for p in pairs]), np.array([p.fold for p in pairs])
    person = np.array([Path(r).parts[0] for r in rel])
    seeds = [int(s) for s in args.train_seeds.split(",")]
    scores: dict[str, list] = {}

    def dist(e, a, b):
        return euclidean(e[a], e[b]).numpy()

    def head(features: torch.Tensor, tr, labels, seed):
        cfg = TrainConfig(backbone="dlib", epochs=args.epochs, lr=args.lr, seed=seed)
        r = fit(features[tr].numpy(), labels, base, cfg, progress=False)
        with torch.inference_mode():
            return r.model.embed(features).float()

    for k in sorted(set(fold.tolist())):
        held = set(person[pa[fold == k]]) | set(person[pb[fold == k]])
        tr = np.array([i for i in range(len(rel)) if person[i] not in held and ok[i] and ok_c[i]])
        labels = np.unique(person[tr], return_inverse=True)[1]
        sel = fold == k
        plans = {s: PairPlan(labels, TrainConfig(backbone="dlib", seed=s).resolved()) for s in seeds}
        embs = {f"head {s}": head(desc, tr, labels, s) for s in seeds}
        embs["ensemble"] = torch.cat(list(embs.values()), 1) / len(seeds) ** 0.5
        embs["frozen"] = F.normalize(desc, dim=1)
        fit_rows = tr[plans[seeds[0]].train_idx]  # never the validation people
        w, b = _ridge(xs[fit_rows], teacher[fit_rows], args.ridge)
        embs["teacher"] = head(xs @ w + b, tr, labels, seeds[0])
        for name, e in embs.items():
            p = plans[int(name.split()[1]) if name.startswith("head ") else seeds[0]]
            t = best_threshold(dist(e, tr[p.val_a], tr[p.val_b]), p.val_y)
            d = dist(e, pa[sel], pb[sel])
            scores.setdefault(name, []).append((float(np.mean((d <= t) == same[sel])), auc(d, same[sel])))
    out = {}
    base_err = 1 - np.mean([a for a, _ in scores["frozen"]])
    for name in ["frozen", *[f"head {s}" for s in seeds], "ensemble", "teacher"]:
        acc = float(np.mean([a for a, _ in scores[name]]))
        out[name] = {"accuracy": acc, "auc": float(np.mean([u for _, u in scores[name]])),
                     "error_reduction": (base_err - (1 - acc)) / base_err}
        print(f"  {shift:7s} {name:9s} acc {acc:.4f}  mean fold AUC {out[name]['auc']:.4f}  "
              f"removes {out[name]['error_reduction'] * 100:+.1f} % of the frozen errors", flush=True)
    return out


def main() -> int:
    import json

    from facetwin.backbones.registry import make_backbone
    from facetwin.cli.options import configure_torch
    from facetwin.core import paths
    from facetwin.training.trainable import cut_backbone

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shifts", default="mask,nir,jpeg,lowres")
    p.add_argument("--seed", type=int, default=0, help="seed of the shifted copies (as domain_shift.py --seed)")
    p.add_argument("--train-seeds", default="0,1,2,3,4")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--ridge", type=float, default=10.0, help="ridge penalty of the teacher re-fit")
    p.add_argument("--json", help="write every figure here")
    p.add_argument("--threads", type=int, default=2, help="torch threads (1 when two runs share 2 cores)")
    args = p.parse_args()
    configure_torch(args.threads)
    root = paths.home() / "domain_shift" / f"seed{args.seed}-limitall" / "lfw"
    base = make_backbone("dlib")
    bb = cut_backbone(base, "fc")
    start, results = time.perf_counter(), {}
    for shift in [s.strip() for s in args.shifts.split(",") if s.strip()]:
        results[shift] = run_shift(shift, root, args, base, bb)
        if args.json:
            Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
