"""Seconds per training epoch with trainable trunk stages (cached frozen part), per cut and pair mode.

The loop is ``facetwin.training.fit.fit`` itself; the feature rows are random values of each cut's size (an epoch's
cost does not depend on them), so no photo is read. ``head`` = the residual head on the backbone's trunk features;
``--trainable-from C`` = the stages from C on plus the same head, on C's cached features. ``--images 6922`` is
lfw-dev's size (its ~3,500 people: two photos each where they have them); 20 % of the people validate, as in
``facetwin train``, and their pairs are scored after every epoch (included in the time).

Usage: ``python benchmarks/adapt_epoch_time.py --backbone arcface-mbf --cuts blocks3,down3 [--pairs batch,fresh]``
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def epoch_seconds(backbone, name: str, rows: int, people: int, epochs: int, cut: str | None,
                  pairs: str) -> tuple[float, float]:
    """Median wall seconds of an epoch, and CPU seconds of the whole run per epoch, epoch 0's validation included:
    with one thread, an upper bound of an idle core's time that a busy shared machine does not inflate (several
    threads spin while they wait for each other there)."""
    from facetwin.training.config import TrainConfig
    from facetwin.training.fit import fit
    from facetwin.training.trainable import cut_backbone

    bb = cut_backbone(backbone, cut)
    x = np.random.default_rng(0).normal(size=(rows, int(bb.feature_dim))).astype(np.float32)
    labels = np.arange(rows) % people
    config = TrainConfig(backbone=name, epochs=epochs, keep="final", lr=1e-4, pairs=pairs, trainable_from=cut,
                         trunk_lr=1e-5 if cut else None)
    cpu = time.process_time()
    result = fit(x, labels, bb, config, progress=False)
    cpu = (time.process_time() - cpu) / epochs
    return float(np.median([h["seconds"] for h in result.history[1:]])), cpu


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="arcface-mbf")
    p.add_argument("--images", type=int, default=6922, help="training rows (default: lfw-dev's photos)")
    p.add_argument("--people", type=int, default=3554)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--cuts", default="blocks3,down3")
    p.add_argument("--pairs", default="batch,fresh", help="pair modes to time (batch, fresh)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (1: CPU seconds = an idle core's seconds)")
    args = p.parse_args()
    from facetwin.backbones.registry import get_backbone
    from facetwin.cli.options import configure_torch

    configure_torch(args.threads)
    backbone = get_backbone(args.backbone)
    print(f"{args.backbone}: {args.images} images of {args.people} people, {args.threads} thread(s), median of "
          f"{args.epochs} epochs; load average {os.getloadavg()[0]:.2f}")
    for pairs in [m for m in args.pairs.split(",") if m]:
        for cut in [None, *[c for c in args.cuts.split(",") if c]]:
            wall, cpu = epoch_seconds(backbone, args.backbone, args.images, args.people, args.epochs, cut, pairs)
            what = f"--trainable-from {cut}" if cut else "head only"
            print(f"  pairs {pairs:5s} {what:30s} {wall:8.2f} s/epoch  ({cpu:.2f} CPU s/epoch)", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
