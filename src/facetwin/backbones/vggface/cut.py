"""VGG-Face cut for training (``--trainable-from K``): ``K`` is deepface's layer index; the paper's ``K = 34``
leaves fc8 (+ ``tanh``) trainable, which is the ``pretrained`` head itself (the tail is the dropout at 34, no
weights). ``K < 34`` also trains ``K..34`` (e.g. ``31``: fc6 and fc7)."""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from facetwin.backbones.base import Cut
from facetwin.backbones.vggface import network as V
from facetwin.errors import FacetwinError


def vggface_cut(backbone, where, to_tensor: Callable[[np.ndarray], torch.Tensor]) -> Cut:
    """The :class:`Cut` of a :class:`~facetwin.backbones.vggface.backbone.VGGFaceBackbone` at deepface index
    ``where`` (layers ``where`` .. split train); ``to_tensor`` preprocesses crops as the backbone does."""
    try:
        k = int(where)
    except (TypeError, ValueError):
        raise FacetwinError(f"vggface is cut at a deepface layer index, got '{where}'.") from None
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
                out.append(frozen_stack(to_tensor(crops[s : s + backbone.batch_size])).float())
        return torch.cat(out).numpy() if out else np.zeros((0, V.feature_dim(k - 1)), np.float32)

    return Cut(str(k), frozen, make_tail, int(V.feature_dim(k - 1)))


__all__ = ["vggface_cut"]
