"""`facetwin train DATA_DIR --out RUN_DIR`: the paper's Siamese transfer learning on cached trunk features."""

from __future__ import annotations

import argparse
import json


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
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("data_dir", metavar="DATA_DIR", help="folder with one sub-folder of images per person")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory to write")
    p.add_argument("--backbone", default="sface", choices=["sface", "vggface"], help="frozen backbone")
    add_training_options(p)
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint.pt")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..train import train

    options = training_options(args)
    summary = train(
        args.data_dir,
        args.out,
        backbone=args.backbone,
        weights=args.weights,
        preset=args.preset,
        resume=args.resume,
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
    )
    print(json.dumps({k: summary.get(k) for k in keys}, indent=2))
    print(f"model written to {args.out} (model.json, head.safetensors, metrics.json, curves.png)")
    return 0


def add_training_options(p) -> None:
    """The training choices shared by `facetwin train` and `facetwin evaluate --cross-train`."""
    p.add_argument("--weights", metavar="FILE", help="weights file of the backbone (vggface)")
    p.add_argument(
        "--preset",
        choices=["paper"],
        help="the paper's hyper-parameters: fc8+tanh head, BCE, Adam lr 1e-3, batch 32, 60 epochs, one pair draw, "
        "last epoch kept (explicit options still override)",
    )
    p.add_argument("--epochs", type=int, help="epochs (default: 60 vggface, 20 sface)")
    p.add_argument("--batch-size", type=int, help="pairs per step (default 32)")
    p.add_argument("--lr", type=float, help="learning rate (default: 1e-3 vggface, 1e-4 sface)")
    p.add_argument("--weight-decay", type=float, help="decoupled weight decay (sface: toward the backbone)")
    p.add_argument("--optimizer", choices=["adam", "adamw"], help="optimizer (default: adam vggface, adamw sface)")
    p.add_argument(
        "--split",
        default="person",
        choices=["person", "paper"],
        help="validation by held-out people, or the paper's Keras validation_split on the pair array",
    )
    p.add_argument("--val-fraction", type=float, default=0.2, help="fraction of people (or pairs) that validate")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the pairs and the initialisation")
    p.add_argument("--pairs", choices=["fresh", "fixed"], help="draw pairs every epoch, or once (the paper)")
    p.add_argument("--embedding-dim", type=int, help="extra Linear to this many dimensions after the head")
    p.add_argument("--loss", choices=["bce", "contrastive"], help="loss (default bce, the paper's)")
    p.add_argument("--margin", type=float, help="contrastive margin (default: mean initial negative distance)")
    p.add_argument(
        "--head",
        choices=["pretrained", "residual"],
        help="pretrained: train the backbone's own head (vggface fc8+tanh); residual: identity-initialised",
    )
    p.add_argument(
        "--keep",
        choices=["best", "final"],
        help="keep the epoch with the best validation AUC (epoch 0 included) or the last one",
    )
    p.add_argument(
        "--no-face",
        default="center",
        choices=["error", "center", "skip"],
        help="photos without a detected face: stop, use the centre crop, or leave them out",
    )
    p.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16"],
        help="arithmetic of the head's matrix products (auto: bf16 autocast for vggface on AMX CPUs, else fp32); "
        "master weights and Adam stay float32",
    )
    p.add_argument("--threads", type=int, default=2, help="torch threads for head training")


def training_options(args) -> dict:
    """The TrainConfig keyword arguments given on the command line."""
    return {
        key: getattr(args, key)
        for key in (
            "epochs",
            "batch_size",
            "lr",
            "weight_decay",
            "optimizer",
            "split",
            "val_fraction",
            "seed",
            "pairs",
            "embedding_dim",
            "loss",
            "margin",
            "head",
            "keep",
            "no_face",
            "precision",
            "threads",
        )
    }
