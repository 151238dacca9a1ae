"""InsightFace's w600k_mbf MobileFaceNet as a plain PyTorch module, filled from its float ONNX graph.

The architecture is arcface_torch's ``MobileFaceNet(blocks=(1, 4, 6, 2), scale=2)``
(``recognition/arcface_torch/backbones/mobilefacenet.py``) as the ONNX file has it: every batch norm after a
convolution is folded into that convolution (so each ``Conv2d`` has a bias and there is no ``BatchNorm2d``),
and the head is not the reference's GDC (7×7 depthwise + ``Linear`` 512→512) but a 1×1 convolution to 64
channels, ``Flatten`` (64·7·7 = 3136), ``fc`` (``Linear`` 3136→512 with bias) and ``features``
(``BatchNorm1d``), the names of the file's initializers. Stages, in forward order, and the ONNX nodes each covers:

=========  ===============================================  ==========================================
stage      what                                             ONNX nodes (output)
=========  ===============================================  ==========================================
stem       3×3/2 conv 3→128, 3×3 grouped conv (64 groups)   Conv_0 … PRelu_3 (343), 56×56
down1      depthwise block 128→128, stride 2                Conv_4 … Conv_8 (529), 28×28
blocks1    4 residual depthwise blocks, 128 (128 inside)    Conv_9 … Add_32 (397)
down2      depthwise block 128→256, stride 2                Conv_33 … Conv_37 (574), 14×14
blocks2    6 residual depthwise blocks, 256 (256 inside)    Conv_38 … Add_73 (473)
down3      depthwise block 256→256 (512 inside), stride 2   Conv_74 … Conv_78 (637), 7×7
blocks3    2 residual depthwise blocks, 256 (256 inside)    Conv_79 … Add_90 (505)
conv_sep   1×1 conv 256→512                                 Conv_91, PRelu_92 (509)
head       1×1 conv 512→64, flatten, fc, batch norm         Conv_93 … BatchNormalization_97 (516)
=========  ===============================================  ==========================================

A depthwise block is 1×1 expand (PReLU) → 3×3 depthwise (PReLU) → 1×1 project (linear), plus its input when
residual. ``forward(x, first=..., last=...)`` runs a contiguous range of stages, so a network can be cut at any
stage: features of ``last="blocks3"`` cached once, then ``first="conv_sep"`` trained on them.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from facetwin.errors import FacetwinError

STAGES = ("stem", "down1", "blocks1", "down2", "blocks2", "down3", "blocks3", "conv_sep", "head")
EMBEDDING_DIM = 512


class ConvPReLU(nn.Module):
    """A convolution with bias (its batch norm folded in), then a per-channel PReLU unless ``linear``."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1, linear: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=True)
        self.act = nn.Identity() if linear else nn.PReLU(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class DepthWise(nn.Module):
    """1×1 expand to ``mid`` → 3×3 depthwise (``stride``) → 1×1 linear project to ``cout``; ``+ x`` if residual."""

    def __init__(self, cin: int, cout: int, mid: int, stride: int = 1, residual: bool = False):
        super().__init__()
        self.residual = residual
        self.expand = ConvPReLU(cin, mid)
        self.depthwise = ConvPReLU(mid, mid, 3, stride, groups=mid)
        self.project = ConvPReLU(mid, cout, linear=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


class Head(nn.Module):
    """The 512-d embedding from the 512×7×7 map: 1×1 conv to 64 (PReLU), flatten, ``fc``, ``features``."""

    def __init__(self, embedding_dim: int = EMBEDDING_DIM):
        super().__init__()
        self.reduce = ConvPReLU(512, 64)
        self.fc = nn.Linear(64 * 7 * 7, embedding_dim)
        self.features = nn.BatchNorm1d(embedding_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.fc(torch.flatten(self.reduce(x), 1)))


def _blocks(count: int, channels: int, mid: int) -> nn.Sequential:
    return nn.Sequential(*(DepthWise(channels, channels, mid, residual=True) for _ in range(count)))


class MobileFaceNet(nn.Module):
    """w600k_mbf: RGB ``(N, 3, 112, 112)`` in ``(x - 127.5) / 127.5`` → raw 512-d embedding (not normalised)."""

    def __init__(self) -> None:
        super().__init__()
        self.stages = nn.Sequential(OrderedDict(
            stem=nn.Sequential(ConvPReLU(3, 128, 3, 2), ConvPReLU(128, 128, 3, 1, groups=64)),
            down1=DepthWise(128, 128, 128, stride=2),
            blocks1=_blocks(4, 128, 128),
            down2=DepthWise(128, 256, 256, stride=2),
            blocks2=_blocks(6, 256, 256),
            down3=DepthWise(256, 256, 512, stride=2),
            blocks3=_blocks(2, 256, 256),
            conv_sep=ConvPReLU(256, 512),
            head=Head(),
        ))

    def forward(self, x: torch.Tensor, first: str = STAGES[0], last: str = STAGES[-1]) -> torch.Tensor:
        """Run the stages ``first`` … ``last`` (inclusive, names in :data:`STAGES`) on ``x``, the input of
        ``first``; the defaults run the whole network."""
        if first not in STAGES or last not in STAGES or STAGES.index(first) > STAGES.index(last):
            raise FacetwinError(f"stages '{first}' to '{last}' are not a range of: {', '.join(STAGES)}.")
        for name in STAGES[STAGES.index(first) : STAGES.index(last) + 1]:
            x = getattr(self.stages, name)(x)
        return x


def _params(model) -> tuple[list, dict, dict]:
    """The graph's nodes, initializers (numpy) and, per tensor, the nodes that read it."""
    from onnx import numpy_helper

    graph = model.graph
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    readers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    return list(graph.node), values, readers


def _set(param: torch.Tensor, value: np.ndarray, where: str) -> None:
    """Copy ``value`` into ``param`` (a PReLU slope ``(C, 1, 1)`` into ``(C,)``), shapes checked."""
    value = value.reshape(-1) if param.dim() == 1 else value
    if value.shape != tuple(param.shape):
        raise FacetwinError(f"w600k_mbf graph: {where} holds {value.shape}, the network expects {tuple(param.shape)}.")
    with torch.no_grad():
        param.copy_(torch.from_numpy(np.array(value, dtype=np.float32)))


def from_graph(model) -> MobileFaceNet:
    """A :class:`MobileFaceNet` holding the weights of w600k_mbf's float graph (``onnx.ModelProto`` from
    :func:`facetwin.backbones.arcface_mbf.graph.float_graph`), in eval mode, trainable.

    The graph is walked in order: the n-th ``Conv`` (and the ``PRelu`` reading its output, if any) fills the
    n-th ``ConvPReLU`` of the module; ``Gemm`` fills ``head.fc``, ``BatchNormalization`` ``head.features``.
    Kernel, stride, groups and activation are checked, so a graph of another shape is an error, not a mix-up.
    """
    from onnx import helper

    nodes, values, readers = _params(model)
    net = MobileFaceNet()
    units = [m for m in net.modules() if isinstance(m, ConvPReLU)]
    convs = [node for node in nodes if node.op_type == "Conv"]
    residual = sum(isinstance(m, DepthWise) and m.residual for m in net.modules())
    adds = sum(node.op_type == "Add" for node in nodes)
    if len(convs) != len(units) or adds != residual:
        raise FacetwinError(f"w600k_mbf graph: {len(convs)} convolutions and {adds} additions, the network has "
                            f"{len(units)} and {residual}.")
    for unit, node in zip(units, convs, strict=True):
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        conv = unit.conv
        prelu = [r for r in readers.get(node.output[0], []) if r.op_type == "PRelu"]
        if (list(attrs.get("strides", [1, 1])) != list(conv.stride) or int(attrs.get("group", 1)) != conv.groups
                or list(attrs.get("pads", [0] * 4))[:2] != list(conv.padding) or bool(prelu) != isinstance(
                    unit.act, nn.PReLU)):
            raise FacetwinError(f"w600k_mbf graph: {node.name or node.output[0]} is not the layer the network has.")
        _set(conv.weight, values[node.input[1]], node.input[1])
        _set(conv.bias, values[node.input[2]], node.input[2])
        if prelu:
            _set(unit.act.weight, values[prelu[0].input[1]], prelu[0].input[1])
    gemm = next(node for node in nodes if node.op_type == "Gemm")
    transposed = any(a.name == "transB" and a.i for a in gemm.attribute)
    fc = net.stages.head.fc
    _set(fc.weight, values[gemm.input[1]] if transposed else values[gemm.input[1]].T, gemm.input[1])
    _set(fc.bias, values[gemm.input[2]], gemm.input[2])
    norm = next(node for node in nodes if node.op_type == "BatchNormalization")
    bn = net.stages.head.features
    for param, name in zip((bn.weight, bn.bias, bn.running_mean, bn.running_var), norm.input[1:5], strict=True):
        _set(param, values[name], name)
    bn.eps = float(next((a.f for a in norm.attribute if a.name == "epsilon"), 1e-5))
    return net.eval()


__all__ = ["STAGES", "ConvPReLU", "DepthWise", "Head", "MobileFaceNet", "from_graph"]
