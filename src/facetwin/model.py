"""A usable face model: backbone (frozen trunk) + head + distance + decision rule.

``Model`` only computes: crops → trunk features → head → embeddings → distance → verdict. Loading a model by
name or from a run directory is :func:`facetwin.loading.load`.

>>> model = facetwin.load("sface")
>>> model.verify("a.jpg", "b.jpg")      # Verification(same=True, distance=0.31, threshold=..., ...)
>>> model.embed(["a.jpg", "b.jpg"])     # (2, 128) float32
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from facetwin.backbones.base import Backbone, identity
from facetwin.core import distances as D
from facetwin.core.jsonsafe import canonical_json
from facetwin.errors import FacetwinError
from facetwin.vision.faces import NOTE_WHOLE, FaceCrop, crop_batches, face_crops
from facetwin.vision.prominence import DEFAULT_FACE_RULE, check_rule

if TYPE_CHECKING:
    import torch


@dataclass
class Verification:
    """The answer to "same person?" for two images."""

    same: bool
    distance: float
    threshold: float
    probability: float
    faces: list[dict]  # one per image: file, box, score, landmarks, note
    distance_kind: str = "cosine"

    def to_dict(self) -> dict:
        return {
            "same": bool(self.same),
            "distance": float(self.distance),
            "threshold": float(self.threshold),
            "probability": float(self.probability) if math.isfinite(self.probability) else None,
            "distance_kind": self.distance_kind,
            "faces": self.faces,
        }


@dataclass
class EmbedBatch:
    """Embeddings of many files; rows of files that failed are NaN and ``ok`` is False there."""

    embeddings: np.ndarray
    ok: np.ndarray
    no_face: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    faces: list[dict | None] = field(default_factory=list)  # per source: the FaceCrop description, None if failed


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))


def _label(source, row: int) -> str:
    return str(source) if isinstance(source, str | Path) else f"image {row}"


class Model:
    """Backbone + head + distance + threshold and logistic calibration."""

    def __init__(
        self,
        backbone: Backbone,
        head: torch.nn.Module | None,
        distance: str,
        threshold: float,
        slope: float,
        intercept: float,
        description: dict,
        source: str,
        face_rule: str = DEFAULT_FACE_RULE,
    ) -> None:
        """``head`` None means the backbone's own pretrained head; ``source`` is how to load this model again
        (a backbone name or a run directory), which galleries record and the service reports; ``face_rule``
        chooses the face of a photo with several (``main`` or ``largest``, see ``vision/prominence.py``)."""
        if distance not in D.DISTANCES:
            raise FacetwinError(f"unknown distance '{distance}'; choose one of: {', '.join(D.DISTANCES)}.")
        self.backbone = backbone
        self.head = head.eval() if head is not None else None
        self.distance = distance
        self.threshold = float(threshold)
        self.slope = float(slope)
        self.intercept = float(intercept)
        self.description = description
        self.source = str(source)
        self.face_rule = check_rule(face_rule)
        self.fingerprint = hashlib.sha256(canonical_json(identity(description)).encode("utf-8")).hexdigest()

    # ---------------------------------------------------------------- crops and embeddings
    def face_crops(self, image, *, face: str | None = None, **policy) -> list[FaceCrop]:
        """Aligned crops of ``image`` for this model's backbone (policy: detect, no_face, all_faces, name); ``face``
        chooses among several faces (default: the model's ``face_rule``)."""
        return face_crops(image, self.backbone.input, face=face or self.face_rule, **policy)

    def embed_crops(self, crops: np.ndarray) -> np.ndarray:
        """Embeddings ``(N, D)`` float32 of aligned crops ``(N, S, S, 3)`` RGB uint8."""
        crops = np.asarray(crops)
        if crops.ndim == 3:
            crops = crops[None]
        return self.embed_features(self.backbone.trunk(crops))

    def embed_features(self, features: np.ndarray) -> np.ndarray:
        """Embeddings ``(N, D)`` float32 of trunk features (e.g. from the feature cache)."""
        features = np.ascontiguousarray(features, dtype=np.float32)
        if self.head is None:
            return self.backbone.embed_features(features)
        import torch

        with torch.inference_mode():
            return self.head(torch.from_numpy(features)).float().numpy()

    def embed(
        self, images, *, detect: bool = True, no_face: str = "error", names=None, face: str | None = None
    ) -> np.ndarray:
        """One embedding per image (its chosen face): ``(N, D)`` float32; a bad image raises FacetwinError.

        Images are paths, bytes, PIL images or RGB arrays; ``names`` label them in messages.
        """
        if isinstance(images, str | Path | bytes | bytearray | Image.Image) or (
            isinstance(images, np.ndarray) and images.ndim <= 3
        ):
            images = [images]
        labels = list(names) if names is not None else [None] * len(images)
        crops = [
            self.face_crops(img, detect=detect, no_face=no_face, name=label, face=face)[0].crop
            for img, label in zip(images, labels, strict=True)
        ]
        if not crops:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        return self.embed_crops(np.stack(crops))

    @property
    def embedding_dim(self) -> int:
        dim = self.description.get("embedding_dim")
        if isinstance(dim, int):
            return dim
        return int(self.embed_features(np.zeros((1, int(self.backbone.feature_dim)), np.float32)).shape[1])

    def embed_many(
        self,
        sources: Sequence,
        *,
        no_face: str = "center",
        skip_unreadable: bool = False,
        batch_size: int = 32,
        progress: bool = False,
    ) -> EmbedBatch:
        """Embeddings of many images, batched; with ``skip_unreadable`` bad files become NaN rows + ``failed``."""
        sources = list(sources)
        labels = [_label(source, row) for row, source in enumerate(sources)]
        out = np.full((len(sources), self.embedding_dim), np.nan, dtype=np.float32)
        result = EmbedBatch(out, np.zeros(len(sources), dtype=bool), faces=[None] * len(sources))
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(sources), desc="embedding", unit="img", leave=False, disable=None)
        try:
            batches = crop_batches(
                zip(labels, sources, strict=True), self.backbone.input, batch_size=batch_size, no_face=no_face,
                face=self.face_rule,
            )
            for batch in batches:
                if batch.failed and not skip_unreadable:
                    raise FacetwinError(batch.failed[0][1])
                result.failed += [(labels[row], message) for row, message in batch.failed]
                if batch.rows:
                    out[batch.rows] = self.embed_crops(np.stack(batch.crops))
                    result.ok[batch.rows] = True
                for row, crop in zip(batch.rows, batch.faces, strict=True):
                    result.faces[row] = crop.to_dict()
                    if crop.face is None and crop.note != NOTE_WHOLE:
                        result.no_face.append(labels[row])
                if bar is not None:
                    bar.update(batch.done)
        finally:
            if bar is not None:
                bar.close()
        return result

    # ---------------------------------------------------------------- decisions
    def distances(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Row-wise distance ``(N,)`` between embeddings (cosine: ``1 - cos``; Euclidean: Keras-eps sqrt)."""
        return D.paired(a, b, self.distance)

    def probability(self, d):
        """Probability of "same person" for distance(s) ``d``: ``sigmoid(slope * d + intercept)``."""
        p = _sigmoid(self.slope * np.asarray(d, dtype=np.float64) + self.intercept)
        return float(p) if np.ndim(p) == 0 else p

    def _require_threshold(self) -> None:
        if not math.isfinite(self.threshold):
            name = self.backbone.name
            raise FacetwinError(
                f"backbone {name} has no calibrated threshold on this machine; {name} needs a trained run "
                f"(--model RUN_DIR) or an explicit threshold (facetwin.load('{name}', threshold=X))."
            )

    def verify(
        self, a, b, *, no_face: str = "error", names: tuple[str, str] | None = None, face: str | None = None
    ) -> Verification:
        """Same person in ``a`` and ``b`` (paths, bytes or RGB arrays)? Uses the chosen face of each (``face``:
        ``main`` or ``largest``, default the model's rule); ``faces`` says how many each photo had.

        ``names`` labels the two images in messages and in ``faces`` (useful for uploaded bytes).
        """
        self._require_threshold()
        labels = names or (None, None)
        crops = [
            self.face_crops(img, no_face=no_face, name=label, face=face)[0]
            for img, label in zip((a, b), labels, strict=True)
        ]
        emb = self.embed_crops(np.stack([c.crop for c in crops]))
        distance = float(self.distances(emb[:1], emb[1:])[0])
        probability = self.probability(distance)
        if not math.isfinite(probability):
            probability = float("nan")
        return Verification(
            same=bool(distance <= self.threshold),
            distance=distance,
            threshold=self.threshold,
            probability=probability,
            faces=[c.to_dict() for c in crops],
            distance_kind=self.distance,
        )

    def __repr__(self) -> str:
        return (
            f"Model(backbone={self.backbone.name!r}, distance={self.distance!r}, threshold={self.threshold:.4f}, "
            f"face={self.face_rule!r}, fingerprint={self.fingerprint[:12]})"
        )


def from_backbone(backbone: Backbone, *, threshold: float | None = None, face: str = DEFAULT_FACE_RULE) -> Model:
    """The plain model of a backbone: its pretrained head, distance and calibration."""
    cal = backbone.calibration
    description = {
        "kind": "backbone",
        "backbone": backbone.describe(),
        "head": "pretrained",
        "distance": backbone.distance,
        "embedding_dim": int(backbone.embedding_dim),
    }  # what determines the embeddings (the fingerprint galleries key on); the decision rule is not part of it
    return Model(
        backbone=backbone,
        head=None,
        distance=backbone.distance,
        threshold=cal.threshold if threshold is None else float(threshold),
        slope=cal.slope,
        intercept=cal.intercept,
        description=description,
        source=backbone.source,
        face_rule=face,
    )


__all__ = ["Model", "Verification", "EmbedBatch", "from_backbone"]
