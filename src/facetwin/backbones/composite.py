"""Several frozen trunks as one model: ``sface+dlib`` (any ``+``-joined list of backbone names).

The trunk feature of a face is the concatenation of each part's L2-normalised embedding, each computed on
that part's own crop of the same detected face (the crops travel packed in one array, see
``vision/align.pack``). The pretrained rule is the cosine distance of the concatenation (with unit parts,
the mean of the parts' cosine similarities); a Siamese head trained on it learns how to weigh them.
Feature caching stays per part (``training/features.py``), so ``sface`` features serve ``sface+dlib``.
Training (``--trainable-from``) cuts it part by part (:meth:`Composite.cut`): the parts that can be cut train their
stages after the cut, the others (``sface``) pass their frozen normalised embedding through.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from facetwin.backbones.base import Backbone, Calibration, Cut, MetricBackbone
from facetwin.backbones.calibrations import UNCALIBRATED
from facetwin.core.distances import normalize
from facetwin.errors import FacetwinError
from facetwin.vision.align import InputSpec, unpack


class PartsTail(nn.Module):
    """The trainable rest of a composite cut part by part: each part's slice of the cut features goes through its
    tail and pretrained head and is normalised; a frozen part's slice (its normalised embedding) passes as it is."""

    def __init__(self, dims: list[int], tails: list[nn.Module | None], heads: list[nn.Module | None]):
        super().__init__()
        self.dims = [int(d) for d in dims]
        self.tails = nn.ModuleList(tail if tail is not None else nn.Identity() for tail in tails)
        self.heads = nn.ModuleList(head if head is not None else nn.Identity() for head in heads)
        self.trained = [tail is not None for tail in tails]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = []
        for chunk, tail, head, trained in zip(torch.split(x, self.dims, dim=1), self.tails, self.heads, self.trained,
                                              strict=True):
            out.append(F.normalize(head(tail(chunk)), dim=1) if trained else chunk)
        return torch.cat(out, dim=1)


def _part_cuts(parts: list[Backbone], where) -> list[Cut | None]:
    """Each part's cut (None: frozen) for ``where``: ``PART=CUT[,PART=CUT...]``, or one CUT for every part that can
    be cut there."""
    text = str(where)
    names = [part.name for part in parts]
    if "=" in text:
        spec = dict(item.split("=", 1) for item in text.split(",") if item)
        unknown = sorted(set(spec) - set(names))
        if unknown:
            raise FacetwinError(f"'{unknown[0]}' is not a part of {'+'.join(names)}; cut one of: {', '.join(names)}.")
        return [part.cut(spec[part.name]) if part.name in spec else None for part in parts]
    cuts: list[Cut | None] = []
    for part in parts:
        try:
            cuts.append(part.cut(text))
        except FacetwinError:
            cuts.append(None)
    if not any(cuts):
        raise FacetwinError(f"no part of {'+'.join(names)} can be cut at '{text}'; name a part: PART=CUT[,PART=CUT].")
    return cuts


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

    def cut(self, where) -> Cut:
        """Cut part by part (``_part_cuts``): the cut features are each part's cut features, or its normalised
        embedding where the part stays frozen; only the parts cut train."""
        cuts = _part_cuts(self.parts, where)
        dims = [cut.dim if cut else int(part.embedding_dim) for part, cut in zip(self.parts, cuts, strict=True)]

        def frozen(crops: np.ndarray) -> np.ndarray:
            views = unpack(np.asarray(crops), self.input.parts)
            return np.concatenate([cut.frozen(view) if cut else normalize(part.embed(view))
                                   for part, cut, view in zip(self.parts, cuts, views, strict=True)], axis=1)

        def make_tail() -> PartsTail:
            return PartsTail(dims, [cut.make_tail() if cut else None for cut in cuts],
                             [part.pretrained_head() if cut else None for part, cut in zip(self.parts, cuts,
                                                                                          strict=True)])

        name = ",".join(f"{part.name}={cut.name}" for part, cut in zip(self.parts, cuts, strict=True) if cut)
        return Cut(name, lambda crops: frozen(crops).astype(np.float32), make_tail, sum(dims))

    def describe(self) -> dict:
        return {"name": self.name, "parts": [part.describe() for part in self.parts], "feature_dim": self.feature_dim}

    def __repr__(self) -> str:
        return f"Composite({', '.join(repr(p) for p in self.parts)})"
