"""Every choice that determines a training run: ``TrainConfig``, the paper's preset and each backbone's defaults.

``preset="paper"`` is the paper exactly (fc8 + tanh, BCE, Adam 1e-3, batch 32, 60 epochs, one pair draw, final
epoch kept). Without a preset, ``vggface`` keeps the paper's model but draws pairs afresh and keeps the best
epoch; ``sface`` gets a residual head, AdamW at 1e-4 with weight decay toward the backbone, 20 epochs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from facetwin.backbones.registry import DEFAULT_BACKBONE, TTA_CHOICES
from facetwin.core.precision import cpu_flags
from facetwin.core.validate import finite_number
from facetwin.errors import FacetwinError
from facetwin.training.splits import SPLITS
from facetwin.vision.faces import NO_FACE_POLICIES as CROP_POLICIES
from facetwin.vision.prominence import DEFAULT_FACE_RULE, FACE_RULES

HEADS = ("pretrained", "residual", "tanh")
# The paper's "layers after 34" (VGG-Face's fc8, made trainable with tanh) on trunks whose every stage is trainable:
# their last stage (the layers that make the 512-d embedding), with tanh on the embedding (head "tanh").
PAPER_CUTS = {"arcface-mbf": "head", "edgeface-xs": "embedding", "edgeface-xxs": "embedding"}
LOSSES = ("bce", "contrastive")
HEAD_PRECISIONS = ("auto", "fp32", "bf16")
NO_FACE_POLICIES = (*CROP_POLICIES, "skip")  # training may also leave face-less photos out
PAPER = {
    "head": "pretrained",
    "embedding_dim": None,
    "loss": "bce",
    "optimizer": "adam",
    "lr": 1e-3,
    "weight_decay": 0.0,
    "batch_size": 32,
    "epochs": 60,
    "pairs": "fixed",
    "keep": "final",
}


# (field, how messages name it, allowed values): checked by TrainConfig.resolved()
_CHOICES = (
    ("tta", "--tta", TTA_CHOICES),
    ("split", "split", SPLITS),
    ("pairs", "pairs mode", ("fresh", "fixed", "batch")),
    ("loss", "loss", LOSSES),
    ("head", "head", HEADS),
    ("no_face", "--no-face policy", NO_FACE_POLICIES),
    ("face", "--face rule", FACE_RULES),
    ("optimizer", "optimizer", ("adam", "adamw")),
    ("keep", "keep rule", ("best", "final")),
    ("precision", "head precision", HEAD_PRECISIONS),
)


@dataclass
class TrainConfig:
    """Every choice that determines a training run (recorded in ``model.json``). ``None`` = backbone default."""

    backbone: str = DEFAULT_BACKBONE
    weights: str | None = None
    tta: str = "none"  # none | flip: mirror averaging of the trunk features (backbones/tta.py)
    preset: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    optimizer: str | None = None  # adam | adamw
    weight_decay: float | None = None
    split: str = "person"
    val_fraction: float = 0.2
    val_draws: int = 5  # split person: validation pairs = this many draws of the pair rule (duplicates removed)
    seed: int = 0
    pairs: str | None = None  # fresh | fixed (the paper's rule, drawn every epoch or once) | batch (batches.py)
    embedding_dim: int | None = None
    loss: str | None = None  # bce | contrastive
    margin: float | None = None  # contrastive margin; None = mean initial negative distance
    head: str | None = None  # pretrained | residual | tanh (the trunk's raw embedding through tanh: the paper's form)
    keep: str | None = None  # best (validation AUC, epoch 0 included) | final
    no_face: str = "center"
    face: str = DEFAULT_FACE_RULE  # main | largest: which face of a photo with several (vision/prominence.py)
    precision: str = "auto"  # auto | fp32 | bf16 (autocast of the head's matrix products; fp32 master weights)
    logistic_init: str = "fit"  # fit (to the initial distances) | keras (glorot-uniform, bias 0)
    trainable_from: str | None = None  # trunk layers from this cut on train too (training/trainable.py)
    trunk_lr: float | None = None  # learning rate of those pretrained layers (default: lr / 10; 0 = frozen)
    train_norms: bool = False  # their batch norms re-estimate running statistics (default: kept as pretrained)
    augment: int = 0  # augmented variants per image (training/augment.py); 0 = none
    augment_degrade: str | None = None  # comma-separated shifts of training/degrade.py added to the augmentation
    adapt: bool = False  # the --adapt recipe (training/adapt.py): never ends worse than the frozen backbone

    def resolved(self) -> TrainConfig:
        """A copy with every ``None`` filled from the preset, then the backbone's defaults."""
        c = dataclasses.replace(self)
        if c.preset not in (None, "paper"):
            raise FacetwinError(f"unknown preset '{c.preset}'; the only preset is 'paper'.")
        defaults = dict(PAPER) if c.preset == "paper" else _backbone_defaults(c.backbone)
        if c.preset == "paper" and c.backbone in PAPER_CUTS:
            defaults.update(head="tanh", trainable_from=PAPER_CUTS[c.backbone])
        elif c.preset == "paper" and c.backbone != "vggface":
            # The paper trains VGG-Face's fc8; a backbone whose own head has no weights gets the residual head.
            defaults["head"] = "residual"
        for key, value in defaults.items():
            if getattr(c, key) is None:
                setattr(c, key, value)
        for key, label, allowed in _CHOICES:
            if getattr(c, key) not in allowed:
                raise FacetwinError(f"unknown {label} '{getattr(c, key)}'; choose one of: {', '.join(allowed)}.")
        if c.trainable_from is not None:
            c.trainable_from = str(c.trainable_from)
            if c.trunk_lr is None:  # the paper's trained layer at the paper's rate; deeper layers slower
                c.trunk_lr = c.lr if c.head == "tanh" else c.lr / 10
        if c.augment_degrade:
            from facetwin.training.degrade import SHIFTS

            bad = [x for x in c.augment_degrade.split(",") if x.strip() and x.strip() not in SHIFTS]
            if bad:
                raise FacetwinError(f"unknown --augment-degrade shift '{bad[0]}'; choose from {', '.join(SHIFTS)}.")
        if c.augment < 0 or (c.trunk_lr is not None and c.trunk_lr < 0):
            raise FacetwinError("--augment must be >= 0 and --trunk-lr >= 0 (0 keeps the trunk layers frozen).")
        if c.precision == "auto":
            c.precision = auto_head_precision(c.backbone)
        finite_number(c.lr, "--lr", positive=True)
        finite_number(c.weight_decay, "--weight-decay")
        finite_number(c.margin, "--margin", positive=True)
        finite_number(c.val_fraction, "--val-fraction")
        if c.weight_decay is not None and c.weight_decay < 0:
            raise FacetwinError(f"--weight-decay must be >= 0, got {c.weight_decay}.")
        if not (0.0 <= c.val_fraction < 1.0):
            raise FacetwinError(f"--val-fraction must be in [0, 1), got {c.val_fraction}.")
        if c.epochs < 0 or c.batch_size < 1 or c.lr <= 0:
            raise FacetwinError("--epochs must be >= 0, --batch-size >= 1 and --lr > 0.")
        return c


def _backbone_defaults(backbone: str) -> dict:
    if backbone == "vggface":
        return {**PAPER, "pairs": "fresh", "keep": "best"}
    return {
        "head": "residual",
        "embedding_dim": None,
        "loss": "bce",
        "optimizer": "adamw",
        "lr": 1e-4,
        "weight_decay": 0.05,
        "batch_size": 32,
        "epochs": 20,
        "pairs": "fresh",
        "keep": "best",
    }


def auto_head_precision(backbone: str) -> str:
    """bf16 autocast for the vggface head on AMX CPUs, fp32 elsewhere (measured with benchmarks/train_speed.py).

    vggface steps (fc8: 10.7 M parameters, 32 pairs): with AMX 49.3 ms fp32 vs 30.5 ms bf16, same validation
    accuracy; with AVX-512 BF16 alone 30.6 ms fp32 vs 35.4 ms bf16 (the casts cost more than they save).
    The sface head is too small for bf16 to pay.
    """
    return "bf16" if backbone == "vggface" and "amx_bf16" in cpu_flags() else "fp32"
