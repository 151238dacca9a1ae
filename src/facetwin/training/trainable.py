"""Trainable trunk layers (``--trainable-from CUT``): a backbone cut in two, a frozen part and a trainable tail.

``cut_backbone(backbone, CUT)`` returns a :class:`CutBackbone`, itself a backbone: its ``trunk`` is the frozen
part (the layers before the cut, so the feature cache holds the output at the cut), and ``make_tail()`` gives a
fresh, trainable copy of the pretrained layers from the cut on, which map cut features to the backbone's own
trunk features. The Siamese head then trains ``tail + head`` on cached cut features, so an epoch costs only the
trainable part. ``describe()`` adds the cut, so features at different cuts never share a cache folder.

Where each family can be cut is its own business (``Backbone.cut``): ``arcface-mbf`` and ``edgeface-*`` at any
stage (``backbones/staged.py``), ``dlib`` at a residual stage or ``fc``, ``vggface`` at a deepface layer index (the
paper: 34); ``sface`` (a fixed ONNX graph) nowhere. A composite (``sface+arcface-mbf``) is cut part by part
(``backbones/composite.py``): only the parts that can be cut train.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from facetwin.backbones.staged import Tail
from facetwin.errors import FacetwinError


class CutBackbone:
    """A backbone whose trunk stops at a cut; ``make_tail()`` is the trainable rest of the original trunk."""

    def __init__(self, backbone, where):
        self.base = backbone
        cut = backbone.cut(where)
        self.cut, self._frozen, self._make_tail, self.feature_dim = cut.name, cut.frozen, cut.make_tail, cut.dim
        self.name = backbone.name
        self.input = backbone.input
        self.distance = backbone.distance
        self.embedding_dim = backbone.embedding_dim
        self.calibration = backbone.calibration
        self.base_feature_dim = int(backbone.feature_dim)

    def trunk(self, crops) -> np.ndarray:
        """Features at the cut ``(N, feature_dim)`` float32 (what the cache stores)."""
        crops = np.asarray(crops)
        return self._frozen(crops[None] if crops.ndim == 3 else crops)

    def make_tail(self, train_norms: bool = False) -> nn.Module:
        """A fresh trainable copy of the pretrained layers from the cut on (cut features -> trunk features); its
        batch norms keep their pretrained statistics unless ``train_norms``."""
        tail = self._make_tail()
        for module in tail.modules():
            if isinstance(module, Tail):
                module.train_norms = bool(train_norms)
        return tail.train()

    def pretrained_head(self) -> nn.Module:
        return self.base.pretrained_head()

    def embed_features(self, features: np.ndarray) -> np.ndarray:
        """The frozen backbone's own embedding of cut features (tail, then its pretrained head)."""
        module = nn.Sequential(self.make_tail(), self.base.pretrained_head()).eval()
        with torch.inference_mode():
            return module(torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))).float().numpy()

    def embed(self, crops) -> np.ndarray:
        return self.embed_features(self.trunk(crops))

    def describe(self) -> dict:
        return {**self.base.describe(), "trainable_from": self.cut, "cut_feature_dim": self.feature_dim}

    def __repr__(self) -> str:
        return f"CutBackbone({self.base!r}, trainable_from={self.cut!r})"


def cut_backbone(backbone, trainable_from):
    """``backbone`` itself when ``trainable_from`` is None, else its :class:`CutBackbone`."""
    if trainable_from is None or str(trainable_from) == "":
        return backbone
    return CutBackbone(backbone, trainable_from)


def training_backbone(config):
    """The backbone a :class:`TrainConfig` trains on (cut when ``config.trainable_from`` is set)."""
    from facetwin.backbones.registry import make_backbone

    if config.trainable_from is not None and getattr(config, "tta", "none") not in (None, "none"):
        raise FacetwinError("--trainable-from and --tta flip cannot be combined yet (the mirror is averaged after "
                            "the trunk, the cut is inside it).")
    return cut_backbone(make_backbone(config.backbone, config.weights, getattr(config, "tta", "none")),
                        config.trainable_from)


def tail_parameters(head: nn.Module) -> list[nn.Parameter]:
    """The trainable pretrained trunk layers of a head built on a :class:`CutBackbone` (its first module)."""
    first = head[0] if isinstance(head, nn.Sequential) and len(head) and getattr(head, "has_tail", False) else None
    return [p for p in first.parameters() if p.requires_grad] if first is not None else []
