"""Mirror averaging (``tta="flip"``): a face's embedding from its aligned crop and the crop's mirror image.

``Flipped(backbone)`` is a backbone whose trunk feature is the mean of the two views' features. For
metric-learning backbones (their pretrained head is L2 normalisation: sface, dlib) each view is normalised
first, so the embedding is the normalised mean of the two embeddings; for others (vggface) the raw trunk
features are averaged. The mirror is taken of the aligned crop: the face is detected and aligned once.
Everything keyed on ``describe()`` (feature cache, model fingerprints, galleries) sees ``"tta": "flip"``.
"""

from __future__ import annotations

import numpy as np

from facetwin.backbones.base import Backbone, Calibration
from facetwin.backbones.calibrations import UNCALIBRATED
from facetwin.core.distances import normalize

TTA_CHOICES = ("none", "flip")


class Flipped(Backbone):
    """``base`` with mirror averaging; calibrated with ``calibration`` (measured for this setting)."""

    def __init__(self, base: Backbone, calibration: Calibration | None = None) -> None:
        self.base = base
        self.name = base.name
        self.input = base.input
        self.distance = base.distance
        self.feature_dim = base.feature_dim
        self.embedding_dim = base.embedding_dim
        self.calibration = calibration or UNCALIBRATED

    @property
    def source(self) -> str:
        return f"{self.name}:flip"

    def trunk(self, crops: np.ndarray) -> np.ndarray:
        crops = np.asarray(crops)
        if crops.ndim == 3:
            crops = crops[None]
        both = self.base.trunk(np.concatenate([crops, crops[:, :, ::-1]]))  # one batch for both views
        views = (both[: len(crops)], both[len(crops) :])
        if self.base.distance == "cosine":
            views = tuple(normalize(v) for v in views)
        return ((views[0] + views[1]) / 2).astype(np.float32)

    def pretrained_head(self):
        return self.base.pretrained_head()

    def embed_features(self, features: np.ndarray) -> np.ndarray:
        return self.base.embed_features(features)

    def describe(self) -> dict:
        return {**self.base.describe(), "tta": "flip"}

    def __repr__(self) -> str:
        return f"Flipped({self.base!r})"
