"""`facetwin train DATA_DIR --out RUN_DIR`: the paper's Siamese transfer learning on cached trunk features."""

from __future__ import annotations

import json
from pathlib import Path

from facetwin.backbones.registry import DEFAULT_BACKBONE
from facetwin.cli.options import add_training_options, configure_torch, training_options
from facetwin.cli.parser import backbone_source, existing_path
from facetwin.errors import FacetwinError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a Siamese head on a folder-per-person data set",
        description=(
            "Train a Siamese head (shared head, Euclidean distance, logistic unit, binary cross-entropy) on "
            "DATA_DIR (one sub-folder per person). The frozen trunk runs once per image and is cached; "
            "a checkpoint is written after every epoch (--resume continues). Writes model.json, "
            "head.safetensors, metrics.json and curves.png into RUN_DIR."
        ),
    )
    p.add_argument("data_dir", type=existing_path("folder", "folder of people"), metavar="DATA_DIR",
                   help="folder with one sub-folder of images per person")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory to write")
    p.add_argument(
        "--backbone", default=DEFAULT_BACKBONE, type=backbone_source, metavar="NAME",
        help="frozen backbone(s): sface (default), dlib, vggface, arcface-mbf, edgeface-xs, edgeface-xxs, or a "
        "'+'-joined list such as sface+arcface-mbf"
    )
    add_training_options(p)
    p.add_argument(
        "--adapt",
        action="store_true",
        help="the recipe the domain-shift benchmark found best for this backbone (cut, learning rates, epochs); "
        "keeps the best epoch by held-out AUC and falls back to the frozen backbone when fine-tuning does not help",
    )
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint.pt")
    p.add_argument("--overwrite", action="store_true",
                   help="start over in a RUN_DIR that holds a run or checkpoint, or write into a folder of other files")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _out_is_a_run_or_empty(out: str, overwrite: bool) -> None:
    """``--out`` may be new, empty or a run (``model.json`` or ``checkpoint.pt``: training asks --resume or
    --overwrite); a folder of other files (the user's own ``metrics.json``, ``curves.png``...) is refused before
    any work unless ``--overwrite``."""
    path = Path(out)
    if overwrite or not path.is_dir() or any((path / name).exists() for name in ("model.json", "checkpoint.pt")):
        return
    if next(path.iterdir(), None) is not None:
        raise FacetwinError(
            f"{out}: holds files but no training run, and a run would overwrite some of them (metrics.json, "
            "curves.png); choose an empty or new --out, or pass --overwrite to write the run into it."
        )


def run(args) -> int:
    from facetwin.training.run import train

    _out_is_a_run_or_empty(args.out, args.overwrite)
    configure_torch(args.threads)
    options = training_options(args)
    if args.adapt:
        from facetwin.training.adapt import adapt_options

        options = adapt_options(args.backbone, options)
    summary = train(
        args.data_dir,
        args.out,
        backbone=args.backbone,
        weights=args.weights,
        preset=args.preset,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.quiet,
        **options,
    )
    keys = (
        "epochs_run",
        "kept_epoch",
        "val_accuracy",
        "val_accuracy_at_threshold",
        "val_auc",
        "initial_val_auc",
        "train_seconds",
        "adapt",
    )
    print(json.dumps({k: summary.get(k) for k in keys}, indent=2))
    print(f"model written to {args.out} (model.json, head.safetensors, metrics.json, curves.png)")
    return 0
