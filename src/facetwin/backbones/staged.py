"""Cutting a network of named stages run in order (arcface-mbf, edgeface) into a frozen prefix and a trainable tail.

``staged_cut(...)`` is the :class:`~facetwin.backbones.base.Cut` of such a network at a stage, named or numbered:
``trainable_from="blocks3"`` (or its index) freezes every stage before ``blocks3``, whose output (flattened) the
feature cache stores, and trains ``blocks3`` and everything after it. The tail is a :class:`Tail`: it keeps the
pretrained statistics of its batch norms while training (``train_norms`` lets them update), since a few thousand
photos are too few to re-estimate them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from facetwin.backbones.base import Cut
from facetwin.errors import FacetwinError


class Unflatten(nn.Module):
    """Rows of flat cut features back to ``(N, *shape)``."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape = tuple(int(s) for s in shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)


class Tail(nn.Sequential):
    """The pretrained stages after a cut, trainable, as one module from flat cut features to trunk features."""

    train_norms = False  # batch norms keep their pretrained running statistics unless set

    def train(self, mode: bool = True) -> Tail:
        super().train(mode)
        if mode and not self.train_norms:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self


def stage_index(who: str, names: Sequence[str], where) -> int:
    """The index of the first trainable stage: ``where`` is a stage name or its index (1 .. last); the first stage
    cannot be the cut (its input is the image itself)."""
    text = str(where)
    index = int(text) if text.isdigit() else (list(names).index(text) if text in names else -1)
    if not 1 <= index < len(names):
        raise FacetwinError(f"{who} cannot be cut at '{where}'; choose one of: {', '.join(names[1:])} "
                            f"(or 1..{len(names) - 1}).")
    return index


def staged_cut(
    who: str,
    names: Sequence[str],
    stages: Sequence[nn.Module],
    where,
    to_tensor: Callable[[np.ndarray], torch.Tensor],
    batch_size: int,
    input_size: int,
    run_prefix: Callable[[str], Callable[[np.ndarray], np.ndarray] | None] | None = None,
) -> Cut:
    """The :class:`Cut` of ``stages`` (run in order, ``names`` alike) at ``where``; ``to_tensor`` makes the first
    stage's input from RGB uint8 crops of ``input_size``. ``run_prefix(name of the last frozen stage)`` may give a
    faster runner of the frozen stages (NCHW float32 in and out, e.g. an exported graph), else PyTorch runs them."""
    index = stage_index(who, names, where)
    prefix = nn.Sequential(*stages[:index]).eval().requires_grad_(False)
    with torch.inference_mode():
        shape = tuple(prefix(to_tensor(np.zeros((1, input_size, input_size, 3), np.uint8))).shape[1:])
    fast = run_prefix(names[index - 1]) if run_prefix is not None else None

    def frozen(crops: np.ndarray) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for start in range(0, len(crops), batch_size):
                x = to_tensor(np.ascontiguousarray(crops[start : start + batch_size]))
                y = torch.from_numpy(fast(x.numpy())) if fast is not None else prefix(x)
                out.append(y.reshape(y.shape[0], -1).float().numpy())
        return np.concatenate(out) if out else np.zeros((0, int(np.prod(shape))), np.float32)

    def make_tail() -> Tail:
        tail = Tail(Unflatten(shape), *copy.deepcopy(list(stages[index:])))
        return tail.requires_grad_(True)

    return Cut(names[index], frozen, make_tail, int(np.prod(shape)))


__all__ = ["Tail", "Unflatten", "stage_index", "staged_cut"]
