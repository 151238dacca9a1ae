"""From a photo to the aligned face crop(s) a backbone expects, with explicit, reported policies.

- a face is found → ``note="detected"`` (several faces: the one ``face`` chooses, ``main`` by default, see
  ``vision/prominence.py``; or all, ranked, with ``all_faces=True``); ``faces_found`` says how many there were;
- no face → :class:`FacetwinError` naming the file (``no_face="error"``, the default), or a centred square
  crop resized to the backbone's size with ``note="no face found: centre crop used"`` (``no_face="center"``);
- ``detect=False`` → the whole image resized to the crop size, ``note="whole image (no detection)"``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from facetwin.errors import FacetwinError, NoFaceError
from facetwin.vision.align import InputSpec, align, pack
from facetwin.vision.detect import Face, detect_faces
from facetwin.vision.io import load_image, to_rgb
from facetwin.vision.prominence import DEFAULT_FACE_RULE, check_rule, rank_faces

NOTE_DETECTED = "detected"
NOTE_CENTRE = "no face found: centre crop used"
NOTE_WHOLE = "whole image (no detection)"
NO_FACE_POLICIES = ("error", "center")


@dataclass
class FaceCrop:
    """One aligned crop and where it came from."""

    source: str
    crop: np.ndarray  # (S, S, 3) RGB uint8
    face: Face | None  # None when no detected face was used
    note: str
    faces_found: int = 0  # faces the detector found in the photo
    rule: str = DEFAULT_FACE_RULE  # how the face was chosen among them

    def to_dict(self) -> dict:
        """JSON-able description (no pixels): file, faces found, rule, box, score, landmarks, note."""
        out = {"file": self.source, "faces_found": self.faces_found, "face_rule": self.rule, "box": None,
               "score": None, "note": self.note}
        if self.face is not None:
            out.update(self.face.to_dict())
        return out


def _label(image, name: str | None) -> str:
    if name:
        return str(name)
    if isinstance(image, str | Path):
        return str(image)
    if isinstance(image, bytes | bytearray):
        return "the uploaded image"
    return "the image"


def _as_rgb(image, label: str) -> np.ndarray:
    if isinstance(image, Image.Image):
        return to_rgb(image)
    if isinstance(image, str | Path | bytes):
        return load_image(image, name=label)
    if isinstance(image, bytearray):
        return load_image(bytes(image), name=label)
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 2:
            arr = np.repeat(arr[:, :, None], 3, axis=2)
        if arr.ndim == 3 and arr.shape[2] == 4:
            arr = arr[:, :, :3]
        if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
            raise FacetwinError(f"{label}: expected an RGB image array (H, W, 3), got shape {tuple(arr.shape)}.")
        if arr.dtype != np.uint8:
            if np.issubdtype(arr.dtype, np.floating) and np.nanmax(arr) <= 1.0:
                arr = arr * 255.0
            arr = np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(arr)
    raise FacetwinError(f"{label}: not an image (expected a file path, bytes, a PIL image or an RGB array).")


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    h, w = image.shape[:2]
    interp = cv2.INTER_AREA if min(h, w) > size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp)


def centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The centred square of the shorter side, resized to ``size``."""
    h, w = image.shape[:2]
    side = min(h, w)
    y0, x0 = (h - side) // 2, (w - side) // 2
    return _resize(image[y0 : y0 + side, x0 : x0 + side], size)


def face_crops(
    image,
    spec: InputSpec,
    *,
    detect: bool = True,
    no_face: str = "error",
    all_faces: bool = False,
    face: str = DEFAULT_FACE_RULE,
    name: str | None = None,
) -> list[FaceCrop]:
    """Aligned crops of ``image`` (path, bytes or RGB array) for a backbone's ``InputSpec``; >= 1 crop or an error.

    One crop (the face ``face`` chooses), or every face ranked by that rule with ``all_faces``."""
    check_rule(face)
    if no_face not in NO_FACE_POLICIES:
        raise FacetwinError(f"unknown no-face policy '{no_face}'; choose one of: {', '.join(NO_FACE_POLICIES)}.")
    label = _label(image, name)
    rgb = _as_rgb(image, label)
    if not detect:
        return [FaceCrop(label, _crop(rgb, spec, None), None, NOTE_WHOLE, 0, face)]
    h, w = rgb.shape[:2]
    faces = rank_faces(detect_faces(rgb), w, h, face)
    if not faces:
        if no_face == "center":
            return [FaceCrop(label, _crop(rgb, spec, "centre"), None, NOTE_CENTRE, 0, face)]
        raise NoFaceError(f"{label}: no face found in the {w}×{h} image.")
    chosen = faces if all_faces else faces[:1]
    return [FaceCrop(label, _crop(rgb, spec, f), f, NOTE_DETECTED, len(faces), face) for f in chosen]


def _crop(rgb: np.ndarray, spec: InputSpec, face) -> np.ndarray:
    """The crop of ``spec`` from a detected ``face``, the centre (``"centre"``) or the whole image (None);
    one crop per part, packed, for a composite spec."""
    if spec.parts:
        return pack([_crop(rgb, part, face) for part in spec.parts])
    if face is None:
        return _resize(rgb, spec.size)
    if isinstance(face, str):
        return centre_crop(rgb, spec.size)
    return align(rgb, face, spec.alignment, spec.size)


@dataclass
class CropBatch:
    """Up to ``batch_size`` crops ready for a trunk, and the sources that failed since the previous batch."""

    rows: list[int] = field(default_factory=list)  # positions of the crops' sources in the input sequence
    crops: list[np.ndarray] = field(default_factory=list)
    faces: list[FaceCrop] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)  # (position, one-sentence reason)

    @property
    def done(self) -> int:
        """How many sources this batch accounts for (for progress bars)."""
        return len(self.rows) + len(self.failed)


def crop_batches(
    sources: Iterable[tuple[str, object]],
    spec: InputSpec,
    *,
    batch_size: int = 32,
    no_face: str = "center",
    face: str = DEFAULT_FACE_RULE,
) -> Iterator[CropBatch]:
    """The one loop from many ``(label, image)`` sources to batches of their chosen face's aligned crop.

    A source that cannot be used (unreadable, or no face with ``no_face="error"``) goes to ``failed`` with
    its message; it never stops the loop. Streams: at most one batch of crops is held at a time.
    """
    batch = CropBatch()
    for row, (label, image) in enumerate(sources):
        try:
            crop = face_crops(image, spec, no_face=no_face, face=face, name=label)[0]
        except FacetwinError as exc:
            batch.failed.append((row, str(exc)))
            continue
        batch.rows.append(row)
        batch.crops.append(crop.crop)
        batch.faces.append(crop)
        if len(batch.rows) >= batch_size:
            yield batch
            batch = CropBatch()
    if batch.done:
        yield batch


__all__ = [
    "FaceCrop", "CropBatch", "face_crops", "crop_batches", "centre_crop", "NOTE_DETECTED", "NOTE_CENTRE", "NOTE_WHOLE"
]
