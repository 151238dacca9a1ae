"""One lfw-dev row per plain model: the README's backbone table.

    python benchmarks/backbone_table.py                                  # every calibrated model
    python benchmarks/backbone_table.py --models sface,arcface-mbf:flip  # some

Each model (``NAME[+NAME...][:flip]``) scores the 3,000 pairs of lfw-dev with ``facetwin evaluate``'s protocol
(5 folds, each fold's threshold chosen on the other folds; the main face of every photo); printed: k-fold accuracy
and its spread, AUC, TAR at FAR 0.1 %, the accuracy at the model's own shipped threshold (all pairs), and the live
pipeline's ms per photo (decode, detect, align, embed; one photo at a time, median over 20 lfw-dev photos x 3).
Models whose weights are not installed are listed as such. Trunk features come from the cache where present.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from calibrate_backbones import ms_per_photo  # the same live-pipeline timing as the calibration

ROOT = Path(__file__).resolve().parents[1]
PAIRS = ROOT.parent / "shared" / "data" / "lfw-dev" / "pairs.txt"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", help="comma-separated model sources (default: every calibrated one)")
    p.add_argument("--pairs", type=Path, default=PAIRS)
    args = p.parse_args()
    if not args.pairs.is_file():
        print(f"{args.pairs}: pairs file not found (needs ../shared/data/lfw-dev)", file=sys.stderr)
        return 2
    import facetwin
    from facetwin.backbones.calibrations import CALIBRATIONS
    from facetwin.core.precision import configure_cpu
    from facetwin.errors import FacetwinError
    from facetwin.evaluation.metrics import accuracy, verification_report
    from facetwin.evaluation.protocol import score_pairs

    configure_cpu()
    images = args.pairs.parent / "images"
    sample = sorted(images.glob("*/*.jpg"))[:20]
    print("| model | accuracy (5-fold) | AUC | TAR @ FAR 0.1 % | at its shipped threshold | ms / photo |")
    print("|---|---|---|---|---|---|")
    for source in (args.models.split(",") if args.models else list(CALIBRATIONS)):
        try:
            model = facetwin.load(source)
        except FacetwinError as exc:
            print(f"| `{source}` | not installed: {exc} | | | | |")
            continue
        scored = score_pairs(args.pairs, images, model, progress=False)
        report = verification_report(scored.distances, scored.same, scored.folds)
        shipped = accuracy(scored.distances, scored.same, model.threshold)
        print(f"| `{source}` | {100 * report['accuracy']:.2f} % ± {100 * report['accuracy_std']:.2f} "
              f"| {report['auc']:.4f} | {100 * report['tar_at_far']['0.001']:.2f} % | {100 * shipped:.2f} % "
              f"| {ms_per_photo(model, sample):.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
