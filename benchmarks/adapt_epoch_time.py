"""Epoch time with trainable trunk layers (cached frozen part) against the head-only epoch, on dlib.

The loop is ``facetwin.training.fit.fit`` itself; the feature rows are random values of each cut's size (an
epoch's cost does not depend on them), so no photo is read. Head only = the residual head on dlib's 128-d trunk
features; ``--trainable-from C`` = the dlib layers after cut C plus the same head, on C's cached features.

Usage: ``python benchmarks/adapt_epoch_time.py [--images 1000] [--people 100] [--cuts fc,stage4,stage3]``
"""

from __future__ import annotations

import argparse

import numpy as np


def epoch_seconds(backbone, rows: int, people: int, epochs: int, trainable_from: str | None) -> float:
    from facetwin.training.config import TrainConfig
    from facetwin.training.fit import fit
    from facetwin.training.trainable import cut_backbone

    bb = cut_backbone(backbone, trainable_from)
    x = np.random.default_rng(0).normal(size=(rows, int(bb.feature_dim))).astype(np.float32)
    labels = np.arange(rows) % people
    config = TrainConfig(backbone="dlib", epochs=epochs, val_fraction=0.0, keep="final", lr=1e-3,
                         trainable_from=trainable_from, trunk_lr=1e-4 if trainable_from else None)
    result = fit(x, labels, bb, config, progress=False)
    return float(np.median([h["seconds"] for h in result.history[1:]]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--people", type=int, default=100)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--cuts", default="fc,stage4,stage3")
    args = p.parse_args()
    from facetwin.backbones.registry import get_backbone
    from facetwin.cli.options import configure_torch

    configure_torch(2)
    backbone = get_backbone("dlib")
    head = epoch_seconds(backbone, args.images, args.people, args.epochs, None)
    print(f"{args.images} images, {2 * args.images} pairs per epoch (median of {args.epochs} epochs)")
    print(f"  head only (128-d trunk features)       {head:8.3f} s/epoch   1.00x")
    for cut in [c for c in args.cuts.split(",") if c]:
        t = epoch_seconds(backbone, args.images, args.people, args.epochs, cut)
        print(f"  --trainable-from {cut:7s} (cached cut) {t:8.3f} s/epoch  {t / head:5.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
