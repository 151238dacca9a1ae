"""Feature extraction time vs. head training time (``--preset paper``) on lfw-dev.

    python benchmarks/train_speed.py --backbone sface
    python benchmarks/train_speed.py --backbone vggface --weights FILE.h5 [--limit 600]

Runs in a private ``$FACETWIN_HOME`` (a temporary folder unless ``--home`` is given), so extraction
starts from an empty feature cache. For ``vggface`` the weights are first imported with
``facetwin weights import vggface FILE`` (the fixture weights are synthetic: speed only, not accuracy).

``--limit N`` extracts only the first N images (people in sorted order) and trains on them; both
times are then extrapolated to the full data set (extraction per image; training per optimizer step
times the number of steps the full data set needs, computed from its labels) and printed as such.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw-dev" / "images"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--backbone", default="sface", choices=["sface", "vggface"])
    p.add_argument("--weights", help="vggface weights file to import (e.g. the Keras fixture)")
    p.add_argument("--limit", type=int, help="extract/train on the first N images only and extrapolate")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--home", help="FACETWIN_HOME to use (default: a fresh temporary folder)")
    p.add_argument("--precision", default="auto")
    args = p.parse_args()

    home = args.home or tempfile.mkdtemp(prefix="facetwin-bench-")
    os.environ["FACETWIN_HOME"] = home
    import torch

    from facetwin.backbones import make_backbone
    from facetwin.training.config import TrainConfig
    from facetwin.training.dataset import dataset_from_features, list_images
    from facetwin.training.features import extract_features
    from facetwin.training.fit import fit
    from facetwin.training.pairs import draw_pairs, epoch_rng
    from facetwin.training.splits import split_people

    weights = None
    if args.backbone == "vggface":
        if not args.weights:
            p.error("--weights FILE is needed for vggface")
        cmd = ["facetwin", "weights", "import", "vggface", args.weights]
        if subprocess.run(cmd).returncode != 0:
            print("weights import failed:", " ".join(cmd), file=sys.stderr)
            return 1
    torch.set_num_threads(2)
    bb = make_backbone(args.backbone, weights)
    files, owners = list_images(args.data)
    n_all = len(files)
    labels_all = np.unique(owners, return_inverse=True)[1]
    if args.limit:
        files, owners = files[: args.limit], owners[: args.limit]
    print(f"backbone {args.backbone}: {len(files)} of {n_all} images, FACETWIN_HOME={home}, torch threads 2")

    t0 = time.perf_counter()
    fs = extract_features(bb, files, progress=True)
    extract_s = time.perf_counter() - t0
    print(
        f"extraction: {extract_s:.1f} s for {len(files)} images ({len(files) / extract_s:.1f} img/s; "
        f"{fs.computed} computed, {fs.cached} cached, {len(fs.no_face)} without a face, {len(fs.failed)} unreadable)"
    )
    data = dataset_from_features(args.data, fs, owners, no_face="center")
    config = TrainConfig(backbone=args.backbone, preset="paper", epochs=args.epochs, precision=args.precision)
    rc = config.resolved()
    print(f"head: preset paper, {rc.head} head, precision {rc.precision}, {rc.epochs} epochs, batch {rc.batch_size}")
    t0 = time.perf_counter()
    result = fit(data.features, data.labels, bb, config, progress=True)
    train_s = time.perf_counter() - t0
    steps = sum(math.ceil(h["pairs"] / rc.batch_size) for h in result.history if h["epoch"] >= 1)
    per_step = sum(h["seconds"] for h in result.history if h["epoch"] >= 1) / max(steps, 1)
    print(f"head training: {train_s:.1f} s total for {steps} steps ({per_step * 1000:.2f} ms/step incl. validation)")
    if args.limit:
        val = split_people(labels_all, 0.2, 0)
        train_labels = labels_all[~val]
        full_pairs = len(draw_pairs(train_labels, epoch_rng(0, 1))[0])
        full_steps = math.ceil(full_pairs / rc.batch_size) * rc.epochs
        full_extract = extract_s / len(files) * n_all
        full_train = per_step * full_steps
        print(
            f"EXTRAPOLATED to {n_all} images: extraction {full_extract / 60:.1f} min, "
            f"{rc.epochs} epochs = {full_steps} steps -> {full_train / 60:.1f} min "
            f"({full_train / full_extract:.2f} x extraction)"
        )
    else:
        print(f"head time / extraction time = {train_s / extract_s:.3f}")
    print(f"final validation accuracy {result.summary.get('val_accuracy')}, AUC {result.summary.get('val_auc')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
