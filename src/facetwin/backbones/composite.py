"""Several frozen trunks as one model: ``sface+dlib`` (any ``+``-joined list of backbone names).

The trunk feature of a face is the concatenation of each part's L2-normalised embedding, each computed on
that part's own crop of the same detected face (the crops travel packed in one array, see
``vision/align.pack``). The pretrained rule is the cosine distance of the concatenation (with unit parts,
the mean of the parts' cosine similarities); a Siamese head trained on it learns how to weigh them.
Feature caching stays per part (``training/features.py``), so ``sface`` features serve ``sface+dlib``.
"""

from __future__ import annotations

import numpy as np

from facetwin.backbones.base import Backbone, Calibration, MetricBackbone
from facetwin.backbones.calibrations import UNCALIBRATED
from facetwin.core.distances import normalize
from facetwin.vision.align import InputSpec, unpack


class Composite(MetricBackbone):
    """The parts' normalised embeddings, concatenated; cosine distance."""


    def __init__(self, parts: list[Backbone], calibration: Calibration | None = None) -> None:
        self.parts = list(parts)
        self.name = "+".join(part.name for part in self.parts)
        self.input = InputSpec(0, "composite", tuple(part.input for part in self.parts))
        self.feature_dim = sum(int(part.embedding_dim) for part in self.parts)
        self.embedding_dim = self.feature_dim
        self.calibration = calibration or UNCALIBRATED

    @property
    def source(self) -> str:
        flipped = {part.source.endswith(":flip") for part in self.parts}
        return f"{self.name}:flip" if flipped == {True} else self.name

    def join(self, part_features: list[np.ndarray]) -> np.ndarray:
        """The composite trunk feature from each part's own trunk features (e.g. read from its cache)."""
        embeddings = [normalize(part.embed_features(f)) for part, f in zip(self.parts, part_features, strict=True)]
        return np.concatenate(embeddings, axis=1).astype(np.float32)

    def trunk(self, crops: np.ndarray) -> np.ndarray:
        crops = np.asarray(crops)
        if crops.ndim == 3:
            crops = crops[None]
        views = unpack(crops, self.input.parts)
        return self.join([part.trunk(view) for part, view in zip(self.parts, views, strict=True)])



    def describe(self) -> dict:
        return {"name": self.name, "parts": [part.describe() for part in self.parts], "feature_dim": self.feature_dim}

    def __repr__(self) -> str:
        return f"Composite({', '.join(repr(p) for p in self.parts)})"
