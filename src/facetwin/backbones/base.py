"""What every backbone provides: a frozen trunk, a pretrained head, its input crop and its distance.

An image reaches a backbone as an aligned RGB uint8 crop of ``input.size``; ``trunk`` maps a batch of
crops to frozen features (cached during training), and ``pretrained_head`` maps those features to the
embedding. A Siamese head trained by facetwin replaces ``pretrained_head`` and keeps the trunk.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from facetwin.core.distances import normalize
from facetwin.errors import FacetwinError
from facetwin.vision.align import InputSpec

if TYPE_CHECKING:
    import torch


SFACE_FP32 = "fp32 (dequantised weights folded)"
SFACE_BF16 = "openvino bf16 (dequantised weights folded)"
# Arithmetic of one network whose features agree to cosine >= 0.999 (tests/test_fast_path.py, test_vggface.py)
# maps to the name that earlier releases recorded, so a model's identity (its fingerprint, the run-directory check)
# stays the same: galleries, indexes and trained runs made under any of them stay usable. Feature caches keep them
# apart. Keys: (field of a describe() document, value).
EQUIVALENT = {
    ("runtime", SFACE_FP32): "onnxruntime fp32 (dequantised weights folded)",
    ("runtime", SFACE_BF16): "onnxruntime fp32 (dequantised weights folded)",
    ("trunk_precision", "bf16@17"): "fp32",  # VGG-Face: bf16 from conv4_1 on, cosine 0.9994 to fp32
}


# Newer backbones (arcface-mbf, edgeface) name their runtime "<engine and precision> (<what runs>)": every engine
# and precision of one network counts as "fp32 (<what runs>)" (each checked to cosine >= 0.999 by its tests).
_LEGACY = frozenset(EQUIVALENT.values())
_ENGINE = re.compile(r"^(?:openvino (?:f32|fp32|bf16)|onnxruntime fp32) \(")


def _canonical(key: str, value: str) -> str:
    if (key, value) in EQUIVALENT or value in _LEGACY:
        return EQUIVALENT.get((key, value), value)
    return _ENGINE.sub("fp32 (", value) if key == "runtime" else value


def identity(description):
    """``description`` (a ``describe()`` document, possibly nested) with equivalent arithmetic named alike."""
    if isinstance(description, dict):
        return {
            key: _canonical(key, value) if isinstance(value, str) else identity(value)
            for key, value in description.items()
        }
    if isinstance(description, list):
        return [identity(value) for value in description]
    return description


def crop_batch(crops, who: str, shape: str) -> np.ndarray:
    """``crops`` as a 4-D RGB uint8 batch ``(N, S, S, 3)`` (one crop becomes a batch of one), or an error
    naming the backbone (``who``) and the ``shape`` it expects."""
    crops = np.asarray(crops)
    if crops.ndim == 3:
        crops = crops[None]
    if crops.ndim != 4 or crops.shape[-1] != 3 or crops.dtype != np.uint8:
        raise FacetwinError(f"{who} expects RGB uint8 crops of shape {shape}, got {crops.dtype} {tuple(crops.shape)}.")
    return crops


@dataclass(frozen=True)
class Calibration:
    """Decision rule of a plain backbone, measured on lfw-dev by ``benchmarks/calibrate_backbones.py``.

    ``probability(d) = sigmoid(slope * d + intercept)``; ``threshold`` is the best-accuracy distance.
    """

    threshold: float
    slope: float
    intercept: float


@dataclass(frozen=True)
class Cut:
    """A trunk cut in two (``--trainable-from``): ``frozen(crops)`` gives flat features at the cut ``(N, dim)``
    (what the feature cache stores) and ``make_tail()`` a fresh trainable copy of the pretrained layers after it,
    mapping those features to the trunk's own features. ``name`` is the cut as recorded (a stage name)."""

    name: str
    frozen: Callable[[np.ndarray], np.ndarray]
    make_tail: Callable[[], torch.nn.Module]
    dim: int


class Backbone(ABC):
    """A pretrained face network split into a frozen trunk and a (replaceable) head."""

    name: str
    input: InputSpec
    distance: str  # "cosine" or "euclidean": the default distance between embeddings
    feature_dim: int  # trunk output size
    embedding_dim: int  # pretrained head output size
    calibration: Calibration

    @abstractmethod
    def trunk(self, crops: np.ndarray) -> np.ndarray:
        """Frozen features ``(N, feature_dim)`` float32 for crops ``(N, size, size, 3)`` RGB uint8."""

    @abstractmethod
    def pretrained_head(self) -> torch.nn.Module:
        """A fresh module mapping trunk features to the backbone's own embedding (the head's initial state)."""

    @abstractmethod
    def describe(self) -> dict:
        """Everything that determines trunk outputs: name, weights SHA-256, preprocessing, split point.

        Used in ``model.json`` and as the feature-cache key, so two backbones with equal ``describe()``
        must compute identical trunk features.
        """

    def _description(self, **own) -> dict:
        """What every backbone's :meth:`describe` holds (name, weights, sizes, input crop), with its ``own`` keys."""
        return {
            "name": self.name,
            "weights_sha256": self.weights_sha256,
            "feature_dim": self.feature_dim,
            "embedding_dim": self.embedding_dim,
            "input": {"size": self.input.size, "alignment": self.input.alignment},
            **own,
        }

    @property
    def source(self) -> str:
        """How ``facetwin.load`` names this plain backbone again (``NAME[:flip]``)."""
        return self.name

    def cut(self, where: str) -> Cut:
        """The trunk cut at ``where`` (a stage name or index): see :class:`Cut`. Backbones whose trunk is a fixed
        graph (sface) have no trainable layers."""
        raise FacetwinError(
            f"backbone {self.name} has no trainable trunk layers (its trunk is a fixed ONNX graph); --trainable-from "
            "needs arcface-mbf, edgeface-xs, edgeface-xxs, dlib or vggface."
        )

    def replica(self) -> Backbone:
        """A backbone computing the same features for one more concurrent caller (the service's ``replicas``
        mode): its own single-threaded runtime where that helps; by default this same, thread-safe object."""
        return self

    def embed_features(self, features: np.ndarray) -> np.ndarray:
        """The pretrained head applied to trunk features: ``(N, embedding_dim)`` float32."""
        import torch

        head = self.pretrained_head().eval()
        with torch.inference_mode():
            return head(torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))).float().numpy()

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """The backbone's own embeddings ``(N, embedding_dim)`` for aligned crops."""
        return self.embed_features(self.trunk(crops))


class MetricBackbone(Backbone):
    """A backbone trained for a metric (sface, dlib): its pretrained head is L2 normalisation, cosine distance."""

    distance = "cosine"

    def pretrained_head(self) -> torch.nn.Module:
        from facetwin.backbones.layers import L2Normalize

        return L2Normalize().eval()

    def embed_features(self, features: np.ndarray) -> np.ndarray:
        return normalize(features)


__all__ = ["Backbone", "Calibration", "Cut", "InputSpec", "MetricBackbone", "crop_batch", "identity"]
