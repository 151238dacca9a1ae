"""Calibrate a plain model's decision rule on lfw-dev: the numbers in ``backbones/calibrations.py``.

    python benchmarks/calibrate_backbones.py --backbone sface
    python benchmarks/calibrate_backbones.py --backbone sface+dlib --tta flip
    python benchmarks/calibrate_backbones.py --backbone sface --channel-order bgr   # sface's other channel order

Every image of the pairs file is embedded once through facetwin's own pipeline (detection, alignment, the
trunk-feature cache), then scored with the LFW k-fold protocol (each fold's threshold chosen on the other
folds), whose mean and standard deviation are printed with the ms per photo of the live pipeline. The
constants written into the package are:

- ``threshold``: the best-accuracy threshold on all pairs (midpoint between neighbouring distances);
- ``slope``, ``intercept``: logistic regression of same-person on distance over all pairs
  (``probability(d) = sigmoid(slope * d + intercept)``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PAIRS = ROOT.parent / "shared" / "data" / "lfw-dev" / "pairs.txt"


def ms_per_photo(model, files: list[Path], rounds: int = 3) -> float:
    """Median wall time of ``model.embed([photo])`` over a few photos (detection + alignment + embedding)."""
    import numpy as np

    model.embed([files[0]])  # warm-up
    times = []
    for _ in range(rounds):
        for f in files:
            start = time.perf_counter()
            model.embed([f], no_face="center")
            times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="sface")
    p.add_argument("--tta", default="none", choices=["none", "flip"])
    p.add_argument("--pairs", type=Path, default=DEFAULT_PAIRS)
    p.add_argument("--images", type=Path, help="images folder (default: images/ next to the pairs file)")
    p.add_argument("--channel-order", choices=["rgb", "bgr"], help="sface only: input channel order to test")
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    args = p.parse_args()
    if not args.pairs.is_file():
        raise SystemExit(f"{args.pairs} is absent: this benchmark needs ../shared/data/lfw-dev")

    from facetwin.backbones import get_backbone
    from facetwin.core.precision import configure_cpu
    from facetwin.evaluation.metrics import accuracy, best_threshold, kfold_accuracy
    from facetwin.evaluation.protocol import score_pairs
    from facetwin.model import from_backbone
    from facetwin.training.siamese import fit_logistic

    configure_cpu()
    options = {"channel_order": args.channel_order} if args.channel_order else {}
    model = from_backbone(get_backbone(args.backbone, tta=args.tta, **options), threshold=0.0)
    images = args.images or args.pairs.parent / "images"
    start = time.perf_counter()
    scored = score_pairs(args.pairs, images, model, skip_missing=True)
    seconds = time.perf_counter() - start
    d, same, folds = scored.distances, scored.same, scored.folds
    kfold = kfold_accuracy(d, same, folds)
    threshold = best_threshold(d, same)
    slope, intercept = fit_logistic(d, same, iterations=200, ridge=0.0)
    sample = sorted(images.glob("*/*.jpg"))[:20]
    out = {
        "source": model.source,
        "backbone": model.backbone.describe(),
        "pairs_used": int(len(d)),
        "distance": model.distance,
        "kfold_accuracy": kfold["accuracy"],
        "kfold_accuracy_std": kfold["accuracy_std"],
        "threshold_all_pairs": threshold,
        "accuracy_at_threshold_all_pairs": accuracy(d, same, threshold),
        "logistic_slope": slope,
        "logistic_intercept": intercept,
        "images": scored.images,
        "no_face": len(scored.no_face),
        "failed": len(scored.failed),
        "seconds_embedding": round(seconds, 1),
        "embedding_cache": scored.cache,
        "ms_per_photo": round(ms_per_photo(model, sample), 1),
    }
    print(json.dumps(out, indent=2))
    print(
        f"\n{model.source}: 5-fold accuracy {100 * kfold['accuracy']:.2f} % ± {100 * kfold['accuracy_std']:.2f} "
        f"on {len(d)} pairs; Calibration(threshold={threshold:.4f}, slope={slope:.4f}, intercept={intercept:.4f}); "
        f"no face in {out['no_face']} of {scored.images} images; {out['ms_per_photo']} ms per photo",
        file=sys.stderr,
    )
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
