"""Small torch modules shared by backbones' pretrained heads."""

from __future__ import annotations

import torch


class L2Normalize(torch.nn.Module):
    """``x / |x|`` row-wise (the pretrained head of metric-learning backbones)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(x, p=2.0, dim=1, eps=1e-12)
