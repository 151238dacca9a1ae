"""Options several commands share, defined once: which model, what to do without a face, how to train."""

from __future__ import annotations

import argparse

from facetwin.backbones.registry import DEFAULT_BACKBONE
from facetwin.cli.parser import backbone_source, existing_path
from facetwin.errors import FacetwinError

TTA = ("none", "flip")  # = facetwin.backbones.registry.TTA_CHOICES
CROP_NO_FACE = ("error", "center")  # = facetwin.vision.faces.NO_FACE_POLICIES (not imported: keeps --help fast)
TRAIN_NO_FACE = (*CROP_NO_FACE, "skip")
FACE_RULES = ("main", "largest")  # = facetwin.vision.prominence.FACE_RULES (not imported: keeps --help fast)
FACE_HELP = (
    "which face of a photo with several: main (default: the most prominent, by size and closeness to the centre) "
    "or largest"
)
BACKBONE_HELP = (
    f"plain pretrained backbone(s): {DEFAULT_BACKBONE} (default), dlib, vggface, arcface-mbf, edgeface-xs, "
    "edgeface-xxs (the last three need `facetwin weights fetch NAME --accept-license` first), or a '+'-joined list "
    "such as sface+arcface-mbf (their normalised embeddings concatenated)"
)
TTA_HELP = "flip: average each face's embedding with its mirror image's (default none)"


def add_model_arguments(p: argparse.ArgumentParser, *, backbone_flags: bool = True) -> None:
    """``--backbone NAME | --model RUN_DIR``, the vggface backbone options and ``--threshold``."""
    which = p.add_mutually_exclusive_group()
    which.add_argument("--backbone", type=backbone_source, metavar="NAME", help=BACKBONE_HELP)
    which.add_argument("--model", type=existing_path("folder", "run directory"), metavar="RUN_DIR",
                       help="a trained run directory (facetwin train --out RUN_DIR)")
    if backbone_flags:
        p.add_argument("--weights", metavar="FILE", help="vggface: weights file (.h5 or converted .safetensors)")
        p.add_argument("--layer", choices=["paper", "fc7", "fc8"], help="vggface: embedding layer (default paper)")
        p.add_argument("--preprocess", choices=["deepface", "vggface"], help="vggface: input normalisation")
        p.add_argument(
            "--precision",
            choices=["auto", "fp32", "bf16", "bf16-all"],
            help="vggface trunk arithmetic: auto (bf16 on CPUs with AMX, else fp32), fp32, bf16 (fp32 through "
            "conv block 3), bf16-all (fastest, cosine ~0.99 to fp32); sface: auto = bf16 on CPUs with native "
            "bfloat16, else fp32 (both in OpenVINO)",
        )
        p.add_argument(
            "--runtime", choices=["auto", "torch", "openvino", "onnxruntime"],
            help="vggface: auto (default: openvino for fp32, else torch), torch, openvino or onnxruntime (fp32 only; "
            "the trunk is exported to ONNX once per weights file, in $FACETWIN_HOME/compiled)",
        )
    p.add_argument("--threshold", type=float, help="override the decision threshold (distance <= threshold: same)")
    p.add_argument("--tta", choices=TTA, help=TTA_HELP)


def model_from_args(args: argparse.Namespace):
    """The :class:`facetwin.model.Model` the arguments ask for (torch is set up only if the model needs it)."""
    from facetwin.loading import load

    keys = ("weights", "layer", "preprocess", "precision", "runtime")
    options = {k: getattr(args, k) for k in keys if getattr(args, k, None)}
    threshold = getattr(args, "threshold", None)
    if args.model:
        if options:
            flags = ", ".join(f"--{k}" for k in options)
            raise FacetwinError(
                f"{args.model}: a trained run fixes its backbone, so {flags} cannot be used with --model."
            )
        configure_torch()
        return load(args.model, threshold=threshold, tta=getattr(args, "tta", None), face=face_rule(args))
    name = args.backbone or DEFAULT_BACKBONE
    if name == "sface":
        extra = sorted(set(options) - {"precision"})
        if extra:
            raise FacetwinError(
                f"backbone sface takes no {', '.join(f'--{k}' for k in extra)} option (these are for vggface)."
            )
    else:
        configure_torch()
    return load(name, threshold=threshold, tta=getattr(args, "tta", None), face=face_rule(args), **options)


def add_face(p: argparse.ArgumentParser) -> None:
    """``--face main|largest``: which face of a photo with several faces is used."""
    p.add_argument("--face", choices=FACE_RULES, default="main", help=FACE_HELP)


def face_rule(args: argparse.Namespace) -> str:
    """The ``--face`` rule of a command (``main`` for commands without the option)."""
    return getattr(args, "face", None) or "main"


def describe_face(face: dict) -> str:
    """One line about the face a command used: where it is and how many faces the photo had, e.g.
    ``face at x=12 y=40 w=80 h=96 (score 0.91; the main one of 3 found)``."""
    if face.get("box") is None:
        return str(face.get("note", "no face"))
    x, y, w, h = face["box"]
    found = int(face.get("faces_found") or 1)
    which = f"the {face.get('face_rule', 'main')} one of {found} found" if found > 1 else "the only face found"
    return f"face at x={x:.0f} y={y:.0f} w={w:.0f} h={h:.0f} (score {face['score']:.2f}; {which})"


def configure_torch(threads: int | None = None) -> None:
    """The process-wide torch settings, made here at the edge (see ``core.precision.configure_cpu``)."""
    from facetwin.core.precision import configure_cpu

    configure_cpu(threads)


def add_no_face(p: argparse.ArgumentParser, *, training: bool = False) -> None:
    """``--no-face``: what to do with a photo in which no face is found."""
    if training:
        p.add_argument(
            "--no-face",
            default="center",
            choices=TRAIN_NO_FACE,
            help="photos without a detected face: stop, use the centre crop, or leave them out",
        )
    else:
        p.add_argument(
            "--no-face",
            choices=CROP_NO_FACE,
            default="error",
            help="when no face is found: stop with an error (default) or use a centred crop",
        )


def add_training_options(p: argparse.ArgumentParser) -> None:
    """The training choices shared by `facetwin train` and `facetwin evaluate --cross-train`."""
    p.add_argument("--weights", metavar="FILE", help="weights file of the backbone (vggface)")
    p.add_argument("--tta", choices=TTA, default="none", help=TTA_HELP)
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
        help="validation by held-out people (default), or the paper's Keras validation_split on the pair array",
    )
    p.add_argument(
        "--val-fraction", type=float, default=0.2, help="fraction of people (or pairs) that validate (default 0.2)"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the split, the pairs and the initialisation (default 0)"
    )
    p.add_argument("--pairs", choices=["fresh", "fixed", "batch"],
                   help="the paper's pair rule drawn every epoch or once (the paper); batch: each photo embedded once "
                   "per epoch, paired in its batch with its person's other photo and the closest other person's")
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
        "--trainable-from",
        metavar="CUT",
        help="train the trunk from stage CUT on too, by name or index (arcface-mbf: down1..head; edgeface: "
        "stage0..stage3, embedding; dlib: stage0..stage4 or fc; vggface: deepface index, the paper's 34; a composite: "
        "PART=CUT,...); the frozen part's output is cached",
    )
    p.add_argument("--trunk-lr", type=float, help="learning rate of those pretrained layers (default: --lr / 10)")
    p.add_argument("--train-norms", action="store_true",
                   help="let the batch norms of those layers re-estimate their statistics (default: kept)")
    p.add_argument(
        "--augment", type=int, default=0, metavar="N", help="N augmented copies of every crop (flip, shift, colour)"
    )
    p.add_argument(
        "--augment-degrade", metavar="SHIFTS", help="add domain shifts to the augmentation: lowres,nir,mask,jpeg"
    )
    add_no_face(p, training=True)
    add_face(p)
    p.add_argument(
        "--head-precision",
        default="auto",
        choices=["auto", "fp32", "bf16"],
        help="arithmetic of the head's matrix products (auto: bf16 autocast for vggface on AMX CPUs, else fp32); "
        "master weights and Adam stay float32",
    )
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")


TRAINING_KEYS = (
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
    "face",
    "trainable_from",
    "trunk_lr",
    "train_norms",
    "augment",
    "augment_degrade",
)


def training_options(args: argparse.Namespace) -> dict:
    """The TrainConfig keyword arguments given on the command line."""
    options = {key: getattr(args, key) for key in TRAINING_KEYS}
    options["precision"] = args.head_precision
    return options
