"""VGG-Face in PyTorch with deepface's exact topology, addressable by deepface layer index 0-37.

deepface's ``VGGFace.base_model()`` is a Keras Sequential of 38 layers (``model.layers`` has no InputLayer):

====  =====================================  ====  ======================================
idx   layer                                  idx   layer
====  =====================================  ====  ======================================
0     ZeroPadding2D(1)                       17    ZeroPadding2D(1)
1     conv1_1 3x3 64 relu                    18    conv4_1 3x3 512 relu
2-3   pad, conv1_2 64                        19-22 pad, conv4_2, pad, conv4_3
4     MaxPool 2x2                            23    MaxPool 2x2
5-8   pad, conv2_1 128, pad, conv2_2 128     24-29 pad, conv5_1, pad, conv5_2, pad, conv5_3
9     MaxPool 2x2                            30    MaxPool 2x2
10-15 pad, conv3_1 256, pad, conv3_2, pad,   31    fc6 = Conv2D 4096 7x7 relu
      conv3_3                                32    Dropout(0.5)
16    MaxPool 2x2                            33    fc7 = Conv2D 4096 1x1 relu
                                             34    Dropout(0.5)
                                             35    fc8 = Conv2D 2622 1x1 linear
                                             36    Flatten
                                             37    softmax
====  =====================================  ====  ======================================

The three "fully connected" convolutions act on a 7x7 (fc6) or 1x1 (fc7, fc8) map with no padding, so
they are exactly matrix products; here they are :class:`Dense` layers. fc6 flattens its 7x7x512 input in
Keras' NHWC order (row, column, channel), so a Keras kernel ``(7, 7, 512, 4096)`` becomes a Linear
weight by a plain reshape to ``(25088, 4096)`` and a transpose. Feature maps travel in channels-last
memory layout, which makes that NHWC flatten a free view and is the layout oneDNN convolutions prefer.

``VGGFace.split(k)`` returns ``(trunk, head)``: the trunk runs layers ``0..k`` and returns flat features,
the head runs layers ``k+1..36`` on those features (a fresh, independent copy of the weights, ready to
train). The paper's split is ``k = 34`` with ``tanh`` on fc8: ``tanh(fc8(fc7 features))``, 2622-d.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

INPUT_SIZE = 224
NUM_LAYERS = 38
PAPER_SPLIT = 34
EMBEDDING_INDEX = 36  # the extractor ends at layers[-2] (Flatten after fc8)
SOFTMAX_INDEX = 37
ACTIVATIONS = ("relu", "tanh", "linear", "softmax")


@dataclass(frozen=True)
class LayerSpec:
    """One deepface layer: its index, kind, VGG-Face name and (for weighted layers) Keras shapes."""

    index: int
    kind: str  # "pad" | "conv" | "pool" | "dense" | "dropout" | "flatten" | "softmax"
    name: str
    in_channels: int = 0
    out_channels: int = 0
    kernel: int = 0  # Keras kernel side (3 for convs, 7 for fc6, 1 for fc7/fc8)
    activation: str = "linear"

    @property
    def weighted(self) -> bool:
        return self.kind in ("conv", "dense")

    @property
    def keras_kernel_shape(self) -> tuple[int, int, int, int]:
        return (self.kernel, self.kernel, self.in_channels, self.out_channels)

    @property
    def keras_bias_shape(self) -> tuple[int]:
        return (self.out_channels,)


def _build_specs() -> tuple[LayerSpec, ...]:
    specs: list[LayerSpec] = []
    channels = 3
    blocks = [(1, 64, 2), (2, 128, 2), (3, 256, 3), (4, 512, 3), (5, 512, 3)]
    for block, width, count in blocks:
        for j in range(1, count + 1):
            specs.append(LayerSpec(len(specs), "pad", f"pad{block}_{j}"))
            specs.append(LayerSpec(len(specs), "conv", f"conv{block}_{j}", channels, width, 3, "relu"))
            channels = width
        specs.append(LayerSpec(len(specs), "pool", f"pool{block}"))
    specs.append(LayerSpec(len(specs), "dense", "fc6", 512, 4096, 7, "relu"))
    specs.append(LayerSpec(len(specs), "dropout", "drop6"))
    specs.append(LayerSpec(len(specs), "dense", "fc7", 4096, 4096, 1, "relu"))
    specs.append(LayerSpec(len(specs), "dropout", "drop7"))
    specs.append(LayerSpec(len(specs), "dense", "fc8", 4096, 2622, 1, "linear"))
    specs.append(LayerSpec(len(specs), "flatten", "flatten"))
    specs.append(LayerSpec(len(specs), "softmax", "softmax", activation="softmax"))
    assert len(specs) == NUM_LAYERS
    return tuple(specs)


LAYERS: tuple[LayerSpec, ...] = _build_specs()
WEIGHTED_LAYERS: tuple[LayerSpec, ...] = tuple(spec for spec in LAYERS if spec.weighted)  # 16, in Keras order


def output_shape(index: int) -> tuple[int, ...]:
    """Per-image output shape of deepface layer ``index``: ``(C, H, W)`` for maps, ``(D,)`` for vectors."""
    channels, side = 3, INPUT_SIZE
    for spec in LAYERS[: index + 1]:
        if spec.kind == "pad":
            side += 2
        elif spec.kind == "conv":
            side -= 2
            channels = spec.out_channels
        elif spec.kind == "pool":
            side //= 2
        elif spec.kind == "dense":
            return (LAYERS[_last_dense_upto(index)].out_channels,)
    return (channels, side, side)


def _last_dense_upto(index: int) -> int:
    return max(spec.index for spec in LAYERS[: index + 1] if spec.kind == "dense")


def feature_dim(index: int) -> int:
    """Flat size of the output of layer ``index`` (what a trunk ending there returns per image)."""
    return math.prod(output_shape(index))


def _activate(x: torch.Tensor, activation: str) -> torch.Tensor:
    if activation == "relu":
        return F.relu(x, inplace=not torch.is_grad_enabled())
    if activation == "tanh":
        return torch.tanh(x)
    if activation == "softmax":
        return torch.softmax(x, dim=-1)
    return x


class ZeroPad(nn.Module):
    """Keras ZeroPadding2D(1). Fused into the following convolution when they run together."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (1, 1, 1, 1))


class Conv(nn.Module):
    """Keras Conv2D 3x3, stride 1, 'valid' padding, with an activation; weight in PyTorch (out, in, kh, kw)."""

    def __init__(self, in_channels: int, out_channels: int, activation: str = "relu") -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.empty(out_channels))
        self.activation = activation

    def forward(self, x: torch.Tensor, padding: int = 0) -> torch.Tensor:
        return _activate(F.conv2d(x, self.weight, self.bias, padding=padding), self.activation)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}, kernel=3x3, activation={self.activation}"


class Pool(nn.Module):
    """Keras MaxPooling2D 2x2, stride 2."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(x, 2, 2)


class Dense(nn.Module):
    """fc6/fc7/fc8: a Keras Conv2D whose kernel covers its whole input map, computed as a matrix product.

    A 4-D input ``(N, C, H, W)`` is flattened in NHWC order (as Keras lays out the kernel); a 2-D input
    ``(N, H*W*C)`` is taken as already flat in that order.
    """

    def __init__(self, in_features: int, out_features: int, activation: str = "relu") -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features))
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
        return _activate(F.linear(x, self.weight, self.bias), self.activation)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}, activation={self.activation}"


class Dropout(nn.Dropout):
    """Keras Dropout(0.5): identity at inference, active when a head containing it trains."""

    def __init__(self) -> None:
        super().__init__(0.5)


class Flatten(nn.Module):
    """Keras Flatten: NHWC order for maps; vectors pass through."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
        return x


class Softmax(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x, dim=-1)


class Unflatten(nn.Module):
    """Turns flat NHWC features back into a channels-last ``(N, C, H, W)`` map (head after a conv split)."""

    def __init__(self, shape_chw: tuple[int, int, int]) -> None:
        super().__init__()
        self.shape_chw = tuple(shape_chw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, h, w = self.shape_chw
        return x.reshape(x.shape[0], h, w, c).permute(0, 3, 1, 2)


def _make_layer(spec: LayerSpec) -> nn.Module:
    if spec.kind == "pad":
        return ZeroPad()
    if spec.kind == "conv":
        return Conv(spec.in_channels, spec.out_channels, spec.activation)
    if spec.kind == "pool":
        return Pool()
    if spec.kind == "dense":
        return Dense(spec.kernel * spec.kernel * spec.in_channels, spec.out_channels, spec.activation)
    if spec.kind == "dropout":
        return Dropout()
    if spec.kind == "flatten":
        return Flatten()
    return Softmax()


class Stack(nn.Module):
    """A run of deepface layers ``start..stop`` (inclusive) executed in order.

    ZeroPad followed by Conv runs as one padded convolution (same numbers, no padded copy). Maps are kept
    channels-last. Layers may hold different dtypes (mixed precision): the input of a weighted layer is
    cast to its weight's dtype. With ``flat_output`` the result is flattened per image in NHWC order.
    """

    def __init__(self, layers: list[nn.Module], start: int, *, flat_output: bool = False, prefix=None) -> None:
        super().__init__()
        self.prefix = nn.Sequential(*(prefix or []))
        self.layers = nn.ModuleList(layers)
        self.start = start
        self.stop = start + len(layers) - 1
        self.flat_output = flat_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prefix(x)
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        layers = list(self.layers)
        i = 0
        while i < len(layers):
            layer = layers[i]
            if isinstance(layer, ZeroPad) and i + 1 < len(layers) and isinstance(layers[i + 1], Conv):
                conv = layers[i + 1]
                x = conv(x if x.dtype == conv.weight.dtype else x.to(conv.weight.dtype), padding=1)
                i += 2
                continue
            if isinstance(layer, (Conv, Dense)) and x.dtype != layer.weight.dtype:
                x = x.to(layer.weight.dtype)
            x = layer(x)
            i += 1
        if self.flat_output and x.dim() == 4:
            x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
        return x

    def extra_repr(self) -> str:
        return f"deepface layers {self.start}..{self.stop}"


class VGGFace(nn.Module):
    """The 38-layer network; ``model.layers[i]`` is deepface's ``model.layers[i]``.

    Input: ``(N, 3, 224, 224)`` float, BGR, already preprocessed (see ``vggface_backbone.preprocess``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(_make_layer(spec) for spec in LAYERS)

    def forward(self, x: torch.Tensor, upto: int = SOFTMAX_INDEX) -> torch.Tensor:
        """Run layers ``0..upto`` (inclusive); the default is the whole network, ending in softmax."""
        return self.stack(0, upto)(x)

    def outputs(self, x: torch.Tensor, indices: list[int]) -> dict[int, torch.Tensor]:
        """The outputs of several layers in one pass, keyed by deepface index (maps flattened NHWC)."""
        wanted = sorted(set(indices))
        results: dict[int, torch.Tensor] = {}
        start = 0
        for index in wanted:
            x = self.stack(start, index)(x)
            results[index] = x if x.dim() == 2 else x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
            start = index + 1
        return results

    def stack(self, start: int, stop: int, *, flat_output: bool = False) -> Stack:
        """Layers ``start..stop`` sharing this model's weights."""
        _check_index(start, "start")
        _check_index(stop, "stop")
        return Stack(list(self.layers[start : stop + 1]), start, flat_output=flat_output)

    def split(self, k: int = PAPER_SPLIT, *, head_activation: str | None = "tanh", end: int = EMBEDDING_INDEX):
        """``(trunk, head)``: trunk = layers ``0..k`` (shares this model's weights, returns flat features);
        head = layers ``k+1..end`` (default 36), an independent copy whose activated layers get
        ``head_activation`` (the paper: ``tanh``; ``None`` keeps the pretrained ones).

        For the paper, ``split(34)`` gives ``trunk: image -> fc7 relu (4096)`` and
        ``head: tanh(fc8(.))`` (2622). A head after a convolutional layer first un-flattens its input.
        An empty head (``k >= end``) is the identity.
        """
        _check_index(k, "split")
        if not 0 <= end <= EMBEDDING_INDEX:
            raise ValueError(f"head end must be a deepface index 0..{EMBEDDING_INDEX}, got {end}")
        if head_activation is not None and head_activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {head_activation!r}")
        trunk = self.stack(0, k, flat_output=True).train(self.training)
        if k >= end:
            return trunk, nn.Identity()
        layers = [copy.deepcopy(layer) for layer in self.layers[k + 1 : end + 1]]
        for layer in layers:
            if head_activation is not None and isinstance(layer, (Conv, Dense)):
                layer.activation = head_activation
        shape = output_shape(k)
        prefix = [Unflatten(shape)] if len(shape) == 3 else None
        head = Stack(layers, k + 1, prefix=prefix).train(self.training)
        for param in head.parameters():
            param.requires_grad_(True)
        return trunk, head


def _check_index(index: int, what: str) -> None:
    if not 0 <= index < NUM_LAYERS:
        raise ValueError(f"{what} must be a deepface layer index 0..{NUM_LAYERS - 1}, got {index}")
