"""Trainable trunk layers (``--trainable-from K``): a backbone cut in two, a frozen part and a trainable tail.

``cut_backbone(backbone, K)`` returns a :class:`CutBackbone`, itself a backbone: its ``trunk`` is the frozen
part (layers before ``K``, so the feature cache holds the output at the cut), and ``make_tail()`` gives a fresh,
trainable copy of the pretrained layers from ``K`` on, which map cut features to the backbone's own trunk
features. The Siamese head then trains ``tail + head`` on cached cut features, so an epoch costs only the
trainable part. ``describe()`` adds the cut, so features at different cuts never share a cache folder.

Where a backbone can be cut:
- ``vggface``: ``K`` is deepface's layer index; the paper's ``K = 34`` leaves fc8 (+ ``tanh``) trainable, which
  is the ``pretrained`` head itself (the tail is the dropout at 34, no weights). ``K < 34`` also trains
  ``K..34`` (e.g. ``31``: fc6 and fc7).
- ``dlib``: ``stage0``..``stage4`` (its five residual stages; ``stage4`` = the last, ``stage3`` = the last two)
  or ``fc`` (the final linear layer only); an integer ``i`` means ``stage{i}``.
- ``sface``: its trunk is an ONNX graph run by onnxruntime, so it has no trainable layers.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from facetwin.errors import FacetwinError

DLIB_CUTS = ("stage0", "stage1", "stage2", "stage3", "stage4", "fc")


class Unflatten(nn.Module):
    """Rows of flat cut features back to ``(N, C, H, W)``."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape = tuple(int(s) for s in shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)


class DlibTail(nn.Module):
    """dlib's layers from a cut on: remaining residual stages, global average pool, the 128x256 linear layer."""

    def __init__(self, network, first_stage: int, shape: tuple[int, ...]):
        super().__init__()
        self.unflatten = Unflatten(shape)
        self.stages = nn.Sequential(*copy.deepcopy(list(network.stages)[first_stage:]))
        self.fc = copy.deepcopy(network.fc)
        self.requires_grad_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.unflatten(x)
        if x.dim() == 4:
            x = self.stages(x).mean(dim=(2, 3))
        return self.fc(x)


def _dlib_cut(backbone, cut) -> tuple[str, object, object, int]:
    """``(name, frozen(crops) -> flat features, make_tail)`` for dlib."""
    name = f"stage{int(cut)}" if str(cut).isdigit() else str(cut)
    if name not in DLIB_CUTS:
        raise FacetwinError(f"dlib cannot be cut at '{cut}'; choose one of: {', '.join(DLIB_CUTS)} (or 0..4).")
    net = backbone.network
    first = DLIB_CUTS.index(name)  # 5 = fc: all stages frozen, features pooled

    def frozen_tensor(x: torch.Tensor) -> torch.Tensor:
        x = (x - net.mean_rgb.view(1, 3, 1, 1)) / 256.0
        x = torch.nn.functional.max_pool2d(torch.relu(net.stem(x)), 3, 2)
        for stage in list(net.stages)[:first]:
            x = stage(x)
        return x.mean(dim=(2, 3)) if first == len(net.stages) else x

    with torch.inference_mode():
        shape = tuple(frozen_tensor(torch.zeros(1, 3, 150, 150)).shape[1:])

    def frozen(crops: np.ndarray) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for s in range(0, len(crops), backbone.batch_size):
                y = frozen_tensor(backbone._tensor(crops[s : s + backbone.batch_size]))
                out.append(y.reshape(y.shape[0], -1).float().numpy())
        return np.concatenate(out) if out else np.zeros((0, int(np.prod(shape))), np.float32)

    return name, frozen, (lambda: DlibTail(net, first, shape)), int(np.prod(shape))


def _vggface_cut(backbone, cut) -> tuple[str, object, object, int]:
    """``(name, frozen, make_tail, dim)`` for VGG-Face at deepface index ``cut`` (layers ``cut..split`` train)."""
    from facetwin.backbones.vggface import network as V
    from facetwin.backbones.vggface.backbone import preprocess

    try:
        k = int(cut)
    except (TypeError, ValueError):
        raise FacetwinError(f"vggface is cut at a deepface layer index, got '{cut}'.") from None
    trunk = backbone._trunk
    if not 1 <= k <= trunk.stop:
        raise FacetwinError(f"vggface cannot be cut at {k}; choose a deepface index 1..{trunk.stop}.")
    layers = list(trunk.layers)
    frozen_stack = V.Stack(layers[:k], 0, flat_output=True).eval()
    shape = V.output_shape(k - 1)

    def make_tail() -> nn.Module:
        tail = [copy.deepcopy(m).float() for m in layers[k:]]
        prefix = [V.Unflatten(shape)] if len(shape) == 3 else None
        stack = V.Stack(tail, k, prefix=prefix, flat_output=True)
        for p in stack.parameters():
            p.requires_grad_(True)
        return stack

    def frozen(crops: np.ndarray) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for s in range(0, len(crops), backbone.batch_size):
                out.append(frozen_stack(preprocess(crops[s : s + backbone.batch_size], backbone.preprocess)).float())
        return torch.cat(out).numpy() if out else np.zeros((0, V.feature_dim(k - 1)), np.float32)

    return str(k), frozen, make_tail, int(V.feature_dim(k - 1))


class CutBackbone:
    """A backbone whose trunk stops at a cut; ``make_tail()`` is the trainable rest of the original trunk."""

    def __init__(self, backbone, cut):
        self.base = backbone
        if backbone.name == "dlib":
            self.cut, self._frozen, self._make_tail, self.feature_dim = _dlib_cut(backbone, cut)
        elif backbone.name == "vggface":
            self.cut, self._frozen, self._make_tail, self.feature_dim = _vggface_cut(backbone, cut)
        else:
            raise FacetwinError(
                f"backbone {backbone.name} has no trainable trunk layers (its trunk is an ONNX graph run by "
                "onnxruntime); --trainable-from needs dlib or vggface."
            )
        self.name = backbone.name
        self.input = backbone.input
        self.distance = backbone.distance
        self.embedding_dim = backbone.embedding_dim
        self.calibration = backbone.calibration
        self.base_feature_dim = int(backbone.feature_dim)

    def trunk(self, crops) -> np.ndarray:
        """Features at the cut ``(N, feature_dim)`` float32 (what the cache stores)."""
        from facetwin.backbones.base import crop_batch

        return self._frozen(crop_batch(crops, self.name, "(N, S, S, 3)"))

    def make_tail(self) -> nn.Module:
        """A fresh trainable copy of the pretrained layers from the cut on (cut features -> trunk features)."""
        return self._make_tail().train()

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
