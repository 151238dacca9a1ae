"""The two stages of indexing, the same code in-process and on Ray.

1. :func:`prepare` (decode + detect + align): a batch of paths → one row per face with its aligned crop, box,
   landmarks and score, or one row with ``face = -1`` for a photo without a face or that could not be read
   (``error`` then says why, naming the file).
2. :class:`Embedder` (one model per instance; a Ray actor in the Ray engine): adds ``embedding`` to the face
   rows in batches and drops the crops.

Every row carries its photo's path (below the archive root: stage 1 reads ``root``/path, the root the driver found,
so every node reads the photos through it), SHA-256 (of the bytes decoded), size, time and face count, so the writer
can tell when a photo is complete whatever order rows arrive in.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from facetwin.errors import FacetwinError
from facetwin.vision.align import InputSpec, crop_shape
from facetwin.vision.faces import face_crops
from facetwin.vision.io import load_image

SCALARS = ("path", "sha256", "size", "mtime_ns", "width", "height", "n_faces", "face", "score", "error")


def _read(path: str) -> tuple[bytes, int]:
    mtime = os.stat(path).st_mtime_ns
    return Path(path).read_bytes(), int(mtime)


def prepare(batch: dict, *, spec: InputSpec, root: str) -> dict:
    """Stage 1 on a batch ``{"path": [...]}`` of paths below ``root``: rows of faces (with crops) and of faceless or
    unreadable photos."""
    rows: dict[str, list] = {k: [] for k in (*SCALARS, "box", "landmarks", "crop")}
    blank = np.zeros(crop_shape(spec), np.uint8)

    def add(path, digest, nbytes, mtime, width, height, n_faces, face=-1, crop=None, error=""):
        for key, value in (
            ("path", path), ("sha256", digest), ("size", nbytes), ("mtime_ns", mtime), ("width", width),
            ("height", height), ("n_faces", n_faces), ("error", error),
        ):
            rows[key].append(value)
        rows["face"].append(face)
        rows["score"].append(crop.face.score if crop is not None else 0.0)
        rows["box"].append(np.asarray(crop.face.box if crop is not None else (0, 0, 0, 0), np.float32))
        rows["landmarks"].append(
            np.asarray(crop.face.landmarks, np.float32).reshape(10) if crop is not None else np.zeros(10, np.float32)
        )
        rows["crop"].append(crop.crop if crop is not None else blank)

    for path in batch["path"]:
        path = str(path)
        full = os.path.join(root, path)
        try:
            data, mtime = _read(full)
        except OSError as exc:
            add(path, "", -1, -1, 0, 0, 0, error=f"{full}: cannot be read ({exc.strerror or exc}).")
            continue
        digest = hashlib.sha256(data).hexdigest()
        if not data:
            add(path, digest, 0, mtime, 0, 0, 0, error=f"{full}: the file is empty.")
            continue
        try:
            rgb = load_image(data, name=full)
        except FacetwinError as exc:
            add(path, digest, len(data), mtime, 0, 0, 0, error=str(exc))
            continue
        height, width = rgb.shape[:2]
        try:
            crops = face_crops(rgb, spec, all_faces=True, name=full)
        except FacetwinError:  # decoded fine: what face_crops refuses is a photo without a face
            crops = []
        if not crops:
            add(path, digest, len(data), mtime, width, height, 0)
        for number, crop in enumerate(crops):
            add(path, digest, len(data), mtime, width, height, len(crops), face=number, crop=crop)
    out = {key: np.asarray(rows[key], dtype=object) for key in ("path", "sha256", "error")}
    for key, dtype in (("size", np.int64), ("mtime_ns", np.int64), ("width", np.int32), ("height", np.int32),
                       ("n_faces", np.int32), ("face", np.int32), ("score", np.float32)):
        out[key] = np.asarray(rows[key], dtype=dtype)
    out["box"] = np.stack(rows["box"]) if rows["box"] else np.zeros((0, 4), np.float32)
    out["landmarks"] = np.stack(rows["landmarks"]) if rows["landmarks"] else np.zeros((0, 10), np.float32)
    out["crop"] = np.stack(rows["crop"]) if rows["crop"] else np.zeros((0, *crop_shape(spec)), np.uint8)
    return out


def load_model(source: str, *, threads: int | None = None):
    """The model named by ``source`` (backbone name or run directory), single-threaded for a worker if asked."""
    from facetwin.loading import load

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
        if source == "sface":
            return load(source, threads=threads)
    return load(source)


def embed_batch_size(model) -> int:
    """Faces per embedding batch: 64 for 112-px crops, fewer for larger inputs (16 at 224 px)."""
    pixels = crop_shape(model.backbone.input)
    return max(8, int(64 * 112 * 112 / (pixels[0] * pixels[1])))


class Embedder:
    """Stage 2: one model per instance (per Ray actor); embeds the face rows of a batch."""

    def __init__(self, source, fingerprint: str, threads: int | None = None):
        self.model = source if not isinstance(source, str) else load_model(source, threads=threads)
        if self.model.fingerprint != fingerprint:
            raise FacetwinError(
                f"model '{source}' on this worker differs from the index's model (fingerprint "
                f"{self.model.fingerprint[:12]} vs {fingerprint[:12]})."
            )
        self.dim = self.model.embedding_dim

    def __call__(self, batch: dict) -> dict:
        faces = np.asarray(batch["face"]) >= 0
        embedding = np.zeros((len(faces), self.dim), np.float32)
        if faces.any():
            embedding[faces] = self.model.embed_crops(np.asarray(batch["crop"])[faces])
        out = {key: value for key, value in batch.items() if key != "crop"}
        out["embedding"] = embedding
        return out


__all__ = ["prepare", "Embedder", "load_model", "embed_batch_size"]
