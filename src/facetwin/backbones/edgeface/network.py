"""EdgeNeXt (Maaz et al. 2022) as Idiap's EdgeFace uses it, in plain PyTorch: 112×112 crops → 512-d.

EdgeFace-XS is timm's ``edgenext_x_small`` and EdgeFace-XXS its ``edgenext_xx_small``, both with the classifier
reset to a 512-d linear head and wrapped in a module whose only child is ``model``; the names here are those of
that wrapper, so its state dicts (``model.stem.*``, ``model.stages.N.*``, ``model.head.*``) load as they are.

The network, in forward order (``EdgeFace.parts``, named by ``PARTS``):

- stem: 4×4 convolution, stride 4 (112 → 28), then a channel layer norm;
- four stages (widths ``Variant.dims``, depths ``Variant.depths``). Every stage but the first begins with a
  channel layer norm and a 2×2 convolution of stride 2 (28 → 14 → 7 → 3). Its blocks are residual: conv blocks
  (depthwise k×k convolution with k = 3, 5, 7, 9 by stage, layer norm, MLP 4× with GELU, per-channel scale
  ``gamma``), and in stages 1-3 a last split-transpose block: the channels split into 2, 3, 4 groups, each group
  but the last added to the previous one's output and passed through a 3×3 depthwise convolution (Res2Net
  style), Fourier positional encoding in stage 1 only, then cross-covariance attention (4 heads; attention
  between channels, not positions, scaled by a learnt temperature), then the MLP as in the conv blocks;
- head: global average pool, layer norm, linear 512.

Layer norms have eps 1e-6. Input: RGB ``(x / 255 - 0.5) / 0.5``, NCHW.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

EMBEDDING_DIM = 512
INPUT_SIZE = 112
EPS = 1e-6
HEADS = 4
EXPAND = 4
KERNELS = (3, 5, 7, 9)  # depthwise kernel of the conv blocks, by stage
SCALES = (2, 2, 3, 4)  # channel groups of the split-transpose block, by stage
POSITIONAL = (False, True, False, False)  # Fourier positional encoding in the split-transpose block, by stage
PARTS = ("stem", "stage0", "stage1", "stage2", "stage3", "embedding")


@dataclass(frozen=True)
class Variant:
    """Widths and depths of the four stages."""

    dims: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]


VARIANTS = {
    "xs": Variant(dims=(32, 64, 100, 192), depths=(3, 3, 9, 3)),  # timm edgenext_x_small
    "xxs": Variant(dims=(24, 48, 88, 168), depths=(2, 2, 6, 2)),  # timm edgenext_xx_small
}


class ChannelNorm(nn.LayerNorm):
    """Layer norm over the channels of an NCHW tensor (timm's ``LayerNorm2d``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class Mlp(nn.Module):
    """Linear, GELU, linear: the inverted bottleneck on channels-last tokens."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, EXPAND * dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(EXPAND * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ConvBlock(nn.Module):
    """``x + gamma * mlp(norm(dwconv(x)))``."""

    def __init__(self, dim: int, kernel: int) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=EPS)
        self.mlp = Mlp(dim)
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_dw(x).permute(0, 2, 3, 1)
        y = self.gamma * self.mlp(self.norm(y))
        return x + y.permute(0, 3, 1, 2)


class PositionalEncoding(nn.Module):
    """Sine/cosine features of the row and column (32 each), projected to ``dim`` channels by a 1×1 conv."""

    hidden = 32
    temperature = 10000.0

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.token_projection = nn.Conv2d(2 * self.hidden, dim, 1)

    def _fourier(self, size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """``(size, hidden)``: sin, cos, sin, ... of the 1-based position scaled to 2π, at halving frequencies."""
        position = torch.arange(1, size + 1, dtype=dtype, device=device) / (size + EPS) * (2 * math.pi)
        index = torch.arange(self.hidden, dtype=dtype, device=device)
        angle = position[:, None] / self.temperature ** (2 * torch.div(index, 2, rounding_mode="floor") / self.hidden)
        return torch.stack((angle[:, 0::2].sin(), angle[:, 1::2].cos()), dim=2).flatten(1)

    def forward(self, height: int, width: int) -> torch.Tensor:
        """``(1, dim, height, width)``."""
        weight = self.token_projection.weight
        rows = self._fourier(height, weight.dtype, weight.device)[:, None, :].expand(height, width, self.hidden)
        cols = self._fourier(width, weight.dtype, weight.device)[None, :, :].expand(height, width, self.hidden)
        features = torch.cat((rows, cols), dim=2).permute(2, 0, 1)[None]
        return self.token_projection(features)


class CrossCovarianceAttention(nn.Module):
    """XCiT's attention across channels: ``softmax(q̂ k̂ᵀ · temperature) v`` per head, with q, k L2-normalised
    over the tokens."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.temperature = nn.Parameter(torch.ones(HEADS, 1, 1))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, channels = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, HEADS, channels // HEADS).permute(2, 0, 3, 4, 1).unbind(0)
        attention = (F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)) * self.temperature
        x = attention.softmax(dim=-1) @ v  # (batch, heads, channels / heads, tokens)
        return self.proj(x.permute(0, 3, 1, 2).reshape(batch, tokens, channels))


class SplitTransposeBlock(nn.Module):
    """Multi-scale depthwise convolutions over channel groups, cross-covariance attention, MLP."""

    def __init__(self, dim: int, scales: int, positional: bool) -> None:
        super().__init__()
        width = math.ceil(dim / scales)
        self.convs = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1, groups=width) for _ in range(scales - 1))
        self.pos_embd = PositionalEncoding(dim) if positional else None
        self.norm_xca = nn.LayerNorm(dim, eps=EPS)
        self.gamma_xca = nn.Parameter(torch.ones(dim))
        self.xca = CrossCovarianceAttention(dim)
        self.norm = nn.LayerNorm(dim, eps=EPS)
        self.mlp = Mlp(dim)
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups = x.chunk(len(self.convs) + 1, dim=1)
        outputs, y = [], groups[0]
        for i, conv in enumerate(self.convs):
            y = conv(y if i == 0 else y + groups[i])
            outputs.append(y)
        y = torch.cat([*outputs, groups[-1]], dim=1)
        batch, channels, height, width = y.shape
        y = y.flatten(2).transpose(1, 2)  # (batch, tokens, channels)
        if self.pos_embd is not None:
            y = y + self.pos_embd(height, width).flatten(2).transpose(1, 2)
        y = y + self.gamma_xca * self.xca(self.norm_xca(y))
        y = self.gamma * self.mlp(self.norm(y.reshape(batch, height, width, channels)))
        return x + y.permute(0, 3, 1, 2)


class Stage(nn.Module):
    """Optional downsampling (channel norm + 2×2 conv, stride 2), then conv blocks and a split-transpose block."""

    def __init__(self, index: int, inputs: int, dim: int, depth: int) -> None:
        super().__init__()
        self.downsample = (
            nn.Identity() if index == 0 else nn.Sequential(ChannelNorm(inputs, eps=EPS), nn.Conv2d(inputs, dim, 2, 2))
        )
        blocks: list[nn.Module] = [ConvBlock(dim, KERNELS[index]) for _ in range(depth - (index > 0))]
        if index > 0:
            blocks.append(SplitTransposeBlock(dim, SCALES[index], POSITIONAL[index]))
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class Head(nn.Module):
    """Global average pool, layer norm, linear 512 (timm's head after ``reset_classifier(512)``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=EPS)
        self.fc = nn.Linear(dim, EMBEDDING_DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(x.mean(dim=(2, 3))))


class EdgeNeXt(nn.Module):
    """Stem, four stages, head; ``forward(x, start, stop)`` runs ``parts[start:stop]``."""

    def __init__(self, variant: Variant) -> None:
        super().__init__()
        dims = variant.dims
        self.stem = nn.Sequential(nn.Conv2d(3, dims[0], 4, 4), ChannelNorm(dims[0], eps=EPS))
        self.stages = nn.Sequential(
            *(Stage(i, dims[max(i - 1, 0)], dims[i], variant.depths[i]) for i in range(len(dims)))
        )
        self.head = Head(dims[-1])

    def forward(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        for part in [self.stem, *self.stages, self.head][start:stop]:
            x = part(x)
        return x


class EdgeFace(nn.Module):
    """EdgeFace-XS or -XXS: preprocessed ``(N, 3, 112, 112)`` → ``(N, 512)`` embeddings (not normalised).

    ``parts`` (stem, stage 0-3, head; names in ``PARTS``) is the forward order; ``forward(x, start, stop)`` runs
    ``parts[start:stop]`` only, so a frozen prefix ``parts[:k]`` can feed a trainable rest ``parts[k:]``.
    """

    def __init__(self, variant: str = "xs") -> None:
        super().__init__()
        self.variant = variant
        self.model = EdgeNeXt(VARIANTS[variant])

    @property
    def stem(self) -> nn.Sequential:
        return self.model.stem

    @property
    def stages(self) -> nn.Sequential:
        return self.model.stages

    @property
    def parts(self) -> list[nn.Module]:
        return [self.model.stem, *self.model.stages, self.model.head]

    def forward(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        return self.model(x, start, stop)


def preprocess(crops) -> torch.Tensor:
    """RGB uint8 crops ``(N, 112, 112, 3)`` (numpy) → float32 NCHW ``(x / 255 - 0.5) / 0.5``."""
    x = torch.from_numpy(crops).permute(0, 3, 1, 2).float()
    return (x / 255.0 - 0.5) / 0.5


__all__ = ["EMBEDDING_DIM", "INPUT_SIZE", "PARTS", "VARIANTS", "EdgeFace", "Variant", "preprocess"]
