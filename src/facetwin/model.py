"""A usable face model: backbone (frozen trunk) + head + distance + decision rule.

``facetwin.load("sface")`` gives the plain backbone with its calibrated threshold;
``facetwin.load("runs/my-run")`` gives a trained Siamese head (``artifact.load_run``).

>>> model = facetwin.load("sface")
>>> model.verify("a.jpg", "b.jpg")      # Verification(same=True, distance=0.31, threshold=..., ...)
>>> model.embed(["a.jpg", "b.jpg"])     # (2, 128) float32
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .backbones import DEFAULT_BACKBONE, get_backbone
from .backbones.base import Backbone
from .errors import FacetwinError
from .faces import FaceCrop, face_crops

EUCLIDEAN_EPS = 1e-7  # Keras' epsilon in the paper's sqrt(max(sum((a-b)^2), eps))
DISTANCES = ("cosine", "euclidean")


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


def _canonical(obj) -> str:
    def clean(value):
        if isinstance(value, float):
            return value if math.isfinite(value) else None
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        if isinstance(value, np.generic):
            return clean(value.item())
        if isinstance(value, str | int | bool) or value is None:
            return value
        return str(value)

    return json.dumps(clean(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))


class Model:
    """Backbone + head + distance + threshold and logistic calibration."""

    def __init__(
        self,
        backbone: Backbone,
        head: torch.nn.Module,
        distance: str,
        threshold: float,
        slope: float,
        intercept: float,
        description: dict,
    ) -> None:
        if distance not in DISTANCES:
            raise FacetwinError(f"unknown distance '{distance}'; choose one of: {', '.join(DISTANCES)}.")
        self.backbone = backbone
        self.head = head.eval()
        self.distance = distance
        self.threshold = float(threshold)
        self.slope = float(slope)
        self.intercept = float(intercept)
        self.description = description
        self.fingerprint = hashlib.sha256(_canonical(description).encode("utf-8")).hexdigest()

    # ---------------------------------------------------------------- crops and embeddings
    def face_crops(self, image, **policy) -> list[FaceCrop]:
        """Aligned crops of ``image`` for this model's backbone (policy: detect, no_face, all_faces, name)."""
        return face_crops(image, self.backbone.input, **policy)

    def embed_crops(self, crops: np.ndarray) -> np.ndarray:
        """Embeddings ``(N, D)`` float32 of aligned crops ``(N, S, S, 3)`` RGB uint8."""
        crops = np.asarray(crops)
        if crops.ndim == 3:
            crops = crops[None]
        features = self.backbone.trunk(crops)
        with torch.inference_mode():
            out = self.head(torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)))
        return out.float().numpy()

    def embed(self, images, *, detect: bool = True, no_face: str = "error") -> np.ndarray:
        """One embedding per image (its largest face): ``(N, D)`` float32; a bad image raises FacetwinError."""
        if isinstance(images, str | Path | bytes | bytearray) or (isinstance(images, np.ndarray) and images.ndim <= 3):
            images = [images]
        crops = [self.face_crops(img, detect=detect, no_face=no_face)[0].crop for img in images]
        if not crops:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        return self.embed_crops(np.stack(crops))

    @property
    def embedding_dim(self) -> int:
        dim = self.description.get("embedding_dim") if isinstance(self.description, dict) else None
        if isinstance(dim, int):
            return dim
        with torch.inference_mode():
            return int(self.head(torch.zeros(1, int(self.backbone.feature_dim))).shape[1])

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
        dim = self.embedding_dim
        out = np.full((len(sources), dim), np.nan, dtype=np.float32)
        ok = np.zeros(len(sources), dtype=bool)
        result = EmbedBatch(out, ok, faces=[None] * len(sources))
        rows: list[int] = []
        crops: list[np.ndarray] = []

        def flush() -> None:
            if rows:
                out[rows] = self.embed_crops(np.stack(crops))
                ok[rows] = True
                rows.clear()
                crops.clear()

        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(sources), desc="embedding", unit="img", leave=False)
        try:
            for row, source in enumerate(sources):
                label = str(source) if isinstance(source, str | Path) else f"image {row}"
                try:
                    crop = self.face_crops(source, no_face=no_face, name=label)[0]
                except FacetwinError as exc:
                    if not skip_unreadable:
                        raise
                    result.failed.append((label, str(exc)))
                else:
                    if crop.face is None and crop.note != "whole image (no detection)":
                        result.no_face.append(label)
                    result.faces[row] = crop.to_dict()
                    rows.append(row)
                    crops.append(crop.crop)
                    if len(rows) >= batch_size:
                        flush()
                if bar is not None:
                    bar.update(1)
            flush()
        finally:
            if bar is not None:
                bar.close()
        return result

    # ---------------------------------------------------------------- decisions
    def distances(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Row-wise distance ``(N,)`` between embeddings (cosine: ``1 - cos``; Euclidean: Keras-eps sqrt)."""
        a = np.atleast_2d(np.asarray(a, dtype=np.float64))
        b = np.atleast_2d(np.asarray(b, dtype=np.float64))
        if self.distance == "cosine":
            na = np.linalg.norm(a, axis=1)
            nb = np.linalg.norm(b, axis=1)
            cos = (a * b).sum(axis=1) / np.maximum(na * nb, 1e-12)
            return (1.0 - cos).astype(np.float64)
        return np.sqrt(np.maximum(((a - b) ** 2).sum(axis=1), EUCLIDEAN_EPS))

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

    def verify(self, a, b, *, no_face: str = "error", names: tuple[str, str] | None = None) -> Verification:
        """Same person in ``a`` and ``b`` (paths, bytes or RGB arrays)? Uses the largest face of each.

        ``names`` labels the two images in messages and in ``faces`` (useful for uploaded bytes).
        """
        self._require_threshold()
        labels = names or (None, None)
        crops = [
            self.face_crops(img, no_face=no_face, name=label)[0] for img, label in zip((a, b), labels, strict=True)
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
            f"fingerprint={self.fingerprint[:12]})"
        )


def from_backbone(backbone: Backbone, *, threshold: float | None = None) -> Model:
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
        head=backbone.pretrained_head(),
        distance=backbone.distance,
        threshold=cal.threshold if threshold is None else float(threshold),
        slope=cal.slope,
        intercept=cal.intercept,
        description=description,
    )


def load(
    name_or_run_dir: str | Path = DEFAULT_BACKBONE, *, threshold: float | None = None, **backbone_options
) -> Model:
    """A model by backbone name ("sface", "vggface", with backbone options) or a trained run directory."""
    target = str(name_or_run_dir)
    path = Path(target)
    if path.is_dir() or (path.suffix == "" and ("/" in target or "\\" in target)):
        if not (path / "model.json").is_file():
            raise FacetwinError(f"{path}: not a facetwin run directory (no model.json).")
        from .artifact import load_run

        if backbone_options:
            raise FacetwinError(
                f"{path}: a trained run fixes its backbone; drop the backbone options {sorted(backbone_options)}."
            )
        model = load_run(path)
        if threshold is not None:
            model.threshold = float(threshold)
        return model
    return from_backbone(get_backbone(target, **backbone_options), threshold=threshold)


__all__ = ["Model", "Verification", "EmbedBatch", "load", "from_backbone"]
