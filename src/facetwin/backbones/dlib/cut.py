"""dlib's ResNet cut for training (``--trainable-from``): ``stage0`` .. ``stage4`` (its five residual stages;
``stage4`` = the last, ``stage3`` = the last two) or ``fc`` (the final linear layer only, on pooled features); an
integer ``i`` means ``stage{i}``."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from facetwin.backbones.base import Cut
from facetwin.backbones.staged import Unflatten
from facetwin.errors import FacetwinError

CUTS = ("stage0", "stage1", "stage2", "stage3", "stage4", "fc")


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


def dlib_cut(backbone, where) -> Cut:
    """The :class:`Cut` of a :class:`~facetwin.backbones.dlib.backbone.DlibBackbone` at ``where``."""
    name = f"stage{int(where)}" if str(where).isdigit() else str(where)
    if name not in CUTS:
        raise FacetwinError(f"dlib cannot be cut at '{where}'; choose one of: {', '.join(CUTS)} (or 0..4).")
    net = backbone.network
    first = CUTS.index(name)  # 5 = fc: all stages frozen, features pooled

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

    return Cut(name, frozen, lambda: DlibTail(net, first, shape), int(np.prod(shape)))


__all__ = ["CUTS", "DlibTail", "dlib_cut"]
