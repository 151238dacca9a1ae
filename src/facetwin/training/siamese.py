"""The Siamese network of the paper: one shared head, Euclidean distance, a logistic unit on the distance.

``Siamese(head)`` maps two batches of cached trunk features to ``(distance, logit)`` where
``distance = sqrt(max(sum((a - b)^2), 1e-7))`` (Keras' epsilon) and ``logit = w * distance + b``
(the paper's ``Dense(1, sigmoid)``; probability of "same person" is ``sigmoid(logit)``).

Heads (``build_head``):
- ``pretrained`` (the paper, vggface): the backbone's own pretrained head, trainable; for VGG-Face that is
  fc8 initialised from the pretrained fc8, followed by ``tanh`` (2622-d).
- ``residual`` (sface and other metric-learning backbones): ``e = normalise(x + W x)`` with
  ``x = normalise(pretrained_head(features))`` and ``W = 0`` at start, so the initial Euclidean distance
  is a monotone function of the backbone's cosine distance (same ranking, same accuracy); weight decay
  on ``W`` pulls the head back toward the identity, i.e. toward the backbone.
- ``tanh`` (the paper's form on a cut trunk whose own head has no weights, e.g. ``arcface-mbf`` from ``head``):
  the trunk's raw embedding through ``tanh``, as the paper's ``tanh(fc8(x))``.
- ``embedding_dim``: an extra ``Linear`` to that many dimensions after the head (the paper's text speaks of
  a 128-node embedding layer); identity-initialised when the sizes match, otherwise a random orthonormal
  projection (which roughly preserves distances).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from facetwin.core.distances import EUCLIDEAN_EPS


class Normalize(nn.Module):
    """L2 normalisation of rows."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1)


class ResidualNormHead(nn.Module):
    """``normalise(x + W x + c)`` on L2-normalised input; ``W = 0, c = 0`` at start (the identity on the sphere)."""

    def __init__(self, dim: int):
        super().__init__()
        self.delta = nn.Linear(dim, dim)
        nn.init.zeros_(self.delta.weight)
        nn.init.zeros_(self.delta.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(x, dim=1)
        return F.normalize(x + self.delta(x), dim=1)


class Frozen(nn.Module):
    """Wraps a module whose parameters do not train (the backbone's own head before a residual adapter)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module
        for p in self.module.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def _projection(in_dim: int, out_dim: int, seed: int) -> nn.Linear:
    layer = nn.Linear(in_dim, out_dim)
    nn.init.zeros_(layer.bias)
    with torch.no_grad():
        if in_dim == out_dim:
            layer.weight.copy_(torch.eye(out_dim))
        else:
            g = torch.Generator().manual_seed(int(seed))
            q, _ = torch.linalg.qr(torch.randn(max(in_dim, out_dim), min(in_dim, out_dim), generator=g))
            w = q.T if out_dim < in_dim else q  # (out, in) with orthonormal rows or columns
            layer.weight.copy_(w[:out_dim, :in_dim])
    return layer


def build_head(
    backbone, kind: str, embedding_dim: int | None = None, seed: int = 0, train_norms: bool = False
) -> nn.Module:
    """A fresh trainable head for ``backbone`` (see the module docstring); on a cut backbone the trunk layers after
    the cut come first (their batch norms re-estimate statistics only with ``train_norms``)."""
    if kind == "pretrained":
        layers: list[nn.Module] = [backbone.pretrained_head()]
    elif kind == "residual":
        layers = [Frozen(backbone.pretrained_head()), ResidualNormHead(int(backbone.embedding_dim))]
    elif kind == "tanh":
        layers = [nn.Tanh()]
    else:
        raise ValueError(f"unknown head kind {kind!r}")
    if embedding_dim:
        layers.append(_projection(int(backbone.embedding_dim), int(embedding_dim), seed))
        if kind == "residual":
            layers.append(Normalize())
    if hasattr(backbone, "make_tail"):  # trainable trunk layers (training/trainable.py) come first
        head = nn.Sequential(backbone.make_tail(train_norms), *layers)
        head.has_tail = True
        return head
    return nn.Sequential(*layers)


def euclidean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``sqrt(max(sum((a-b)^2), 1e-7))`` row-wise, as the paper's Keras code."""
    return torch.sqrt(torch.clamp(((a - b) ** 2).sum(dim=1), min=EUCLIDEAN_EPS))


class Siamese(nn.Module):
    """Shared head, Euclidean distance, ``Linear(1, 1)`` on the distance (a logit; sigmoid gives P(same))."""

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head
        self.logistic = nn.Linear(1, 1)

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def logit(self, distance: torch.Tensor) -> torch.Tensor:
        return self.logistic(distance.unsqueeze(1)).squeeze(1)

    def forward(self, fa: torch.Tensor, fb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = fa.shape[0]
        e = self.head(torch.cat([fa, fb]))  # one matrix product for both sides
        d = euclidean(e[:n].float(), e[n:].float())
        return d, self.logit(d)

    @property
    def slope(self) -> float:
        return float(self.logistic.weight.detach().reshape(()))

    @property
    def intercept(self) -> float:
        return float(self.logistic.bias.detach().reshape(()))

    def logistic_threshold(self) -> float:
        """The distance where ``sigmoid(slope * d + intercept) = 0.5`` (``-intercept / slope``)."""
        slope = self.slope
        return float(-self.intercept / slope) if slope != 0 else float("nan")

    def set_logistic(self, slope: float, intercept: float) -> None:
        with torch.no_grad():
            self.logistic.weight.fill_(float(slope))
            self.logistic.bias.fill_(float(intercept))


def fit_logistic(
    distances: np.ndarray, same: np.ndarray, iterations: int = 50, ridge: float = 1e-3
) -> tuple[float, float]:
    """Maximum-likelihood ``(slope, intercept)`` of ``P(same) = sigmoid(slope*d + intercept)`` (Newton's method).

    Used to start the logistic unit from the initial distances (negative slope: farther = different),
    so epoch 1 does not begin with a random decision rule. A small ridge keeps separable data finite
    (``ridge=0`` is the plain maximum-likelihood fit, used for the published calibrations).
    """
    d = np.asarray(distances, dtype=np.float64)
    y = np.asarray(same, dtype=np.float64)
    scale = float(np.std(d)) or 1.0
    mu = float(np.mean(d))
    x = (d - mu) / scale
    w = np.zeros(2)  # on standardised distance: logit = w0 * x + w1
    for _ in range(iterations):
        z = w[0] * x + w[1]
        p = 1.0 / (1.0 + np.exp(-z))
        g = np.array([np.sum((p - y) * x), np.sum(p - y)]) + ridge * w * len(x)
        s = p * (1 - p)
        h = np.array([[np.sum(s * x * x), np.sum(s * x)], [np.sum(s * x), np.sum(s)]]) + ridge * len(x) * np.eye(2)
        step = np.linalg.solve(h, g)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    slope = w[0] / scale
    intercept = w[1] - w[0] * mu / scale
    return float(slope), float(intercept)


def bce_loss(logit: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of ``sigmoid(logit)`` against ``same`` (1 = same person), mean over the batch."""
    return F.binary_cross_entropy_with_logits(logit, same)


def contrastive_loss(distance: torch.Tensor, same: torch.Tensor, margin: float) -> torch.Tensor:
    """Hadsell-Chopra-LeCun: ``y d^2 + (1 - y) max(0, margin - d)^2``, mean over the batch."""
    return (same * distance**2 + (1 - same) * torch.clamp(margin - distance, min=0) ** 2).mean()


def log_loss(logit: np.ndarray, same: np.ndarray) -> float:
    """Mean binary cross-entropy for numpy logits (numerically stable)."""
    z = np.asarray(logit, dtype=np.float64)
    y = np.asarray(same, dtype=np.float64)
    return float(np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))))
