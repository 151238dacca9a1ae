"""Aligned face crops from 5 landmarks.

- ``five_point``: the least-squares similarity transform (Umeyama 1991: rotation, uniform scale,
  translation) that maps the YuNet landmarks onto the standard ArcFace/SFace 112×112 template, the template
  OpenCV's ``FaceRecognizerSF.alignCrop`` uses; scaled for other crop sizes.
- ``vggface`` (deepface): rotate about the box centre so the eyes are level, crop the detected box, plain
  resize to the crop size (224×224) — done as one affine warp.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from facetwin.vision.dlib_chip import face_chip
from facetwin.vision.geometry import similarity_transform


@dataclass(frozen=True)
class InputSpec:
    """The crop a backbone expects: side length in pixels and the alignment that makes it.

    A composite model (several trunks) has ``parts``: one crop per part, made from the same detected face
    and packed into one array (:func:`pack`), so batching and caching treat it like any crop.
    """

    size: int
    alignment: str  # "five_point" (5-landmark template), "vggface" (level eyes, crop box), "dlib" (dlib's chip)
    parts: tuple[InputSpec, ...] = ()

    def describe(self) -> dict:
        """What determines the crop, for cache keys and model descriptions."""
        if self.parts:
            return {"parts": [part.describe() for part in self.parts]}
        return {"size": self.size, "alignment": self.alignment}


def crop_shape(spec: InputSpec) -> tuple[int, int, int]:
    """The array shape of one crop of ``spec`` (packed parts for a composite)."""
    if spec.parts:
        return (sum(part.size * part.size for part in spec.parts), 1, 3)
    return (spec.size, spec.size, 3)


def pack(crops: list[np.ndarray]) -> np.ndarray:
    """Several square RGB crops as one ``(sum of S*S, 1, 3)`` uint8 array (see :func:`unpack`)."""
    return np.concatenate([c.reshape(-1, 1, 3) for c in crops])


def unpack(batch: np.ndarray, parts: tuple[InputSpec, ...]) -> list[np.ndarray]:
    """The ``(N, S, S, 3)`` crops of each part from a batch of packed crops ``(N, L, 1, 3)``."""
    out, start = [], 0
    for part in parts:
        n = part.size * part.size
        out.append(np.ascontiguousarray(batch[:, start : start + n, 0, :].reshape(len(batch), part.size, part.size, 3)))
        start += n
    return out


# ArcFace / SFace template for a 112×112 crop, in YuNet's landmark order (right eye, left eye, nose,
# right mouth corner, left mouth corner; "right" is the person's right, i.e. image-left).
ARCFACE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


def five_point(image: np.ndarray, landmarks: np.ndarray, size: int = 112) -> np.ndarray:
    """Crop ``(size, size, 3)`` with the landmarks moved onto the ArcFace template."""
    template = ARCFACE_112 * (size / 112.0)
    matrix = similarity_transform(np.asarray(landmarks, np.float64).reshape(5, 2), template)
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def eye_angle(landmarks: np.ndarray) -> float:
    """Angle (degrees) of the line from the image-left eye to the image-right eye."""
    marks = np.asarray(landmarks, np.float64).reshape(5, 2)
    (x1, y1), (x2, y2) = marks[0], marks[1]
    return math.degrees(math.atan2(y2 - y1, x2 - x1))


def vggface(image: np.ndarray, box, landmarks: np.ndarray, size: int = 224) -> np.ndarray:
    """deepface-style crop: eyes levelled by a rotation about the box centre, box cropped, resized to size."""
    x, y, w, h = (float(v) for v in box)
    w, h = max(w, 1.0), max(h, 1.0)
    cx, cy = x + w / 2.0, y + h / 2.0
    rotate = cv2.getRotationMatrix2D((cx, cy), eye_angle(landmarks), 1.0)  # positive = counter-clockwise
    rotate = np.vstack([rotate, [0.0, 0.0, 1.0]])
    to_crop = np.array([[size / w, 0.0, -x * size / w], [0.0, size / h, -y * size / h], [0.0, 0.0, 1.0]])
    matrix = (to_crop @ rotate)[:2]
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _reduce(image: np.ndarray, box, landmarks: np.ndarray, size: int):
    """Cut a margin-padded region around a large face and shrink it with area averaging.

    A face of 2,000 px warped straight to 112 px would alias (bilinear sampling skips pixels); shrinking
    first to about twice the crop size keeps the warp sharp and cheap. Returns (image, box, landmarks).
    """
    x, y, w, h = (float(v) for v in box)
    side = max(w, h)
    factor = (2.0 * size) / side if side > 0 else 1.0
    if factor >= 0.999:
        return image, box, landmarks
    height, width = image.shape[:2]
    x0, y0 = max(0, int(x - side)), max(0, int(y - side))
    x1, y1 = min(width, int(math.ceil(x + w + side))), min(height, int(math.ceil(y + h + side)))
    region = image[y0:y1, x0:x1]
    new_w, new_h = max(1, round(region.shape[1] * factor)), max(1, round(region.shape[0] * factor))
    fx, fy = new_w / region.shape[1], new_h / region.shape[0]
    small = cv2.resize(region, (new_w, new_h), interpolation=cv2.INTER_AREA)
    marks = np.asarray(landmarks, np.float64).reshape(5, 2).copy()
    marks[:, 0] = (marks[:, 0] - x0) * fx
    marks[:, 1] = (marks[:, 1] - y0) * fy
    return small, ((x - x0) * fx, (y - y0) * fy, w * fx, h * fy), marks


def align(image: np.ndarray, face, alignment: str, size: int) -> np.ndarray:
    """The crop of ``face`` (a :class:`facetwin.vision.detect.Face`) for an ``InputSpec`` alignment."""
    if alignment == "dlib":  # dlib's chip (it shrinks large faces itself)
        return face_chip(image, face.landmarks, size=size)
    image, box, landmarks = _reduce(image, face.box, face.landmarks, size)
    if alignment == "five_point":
        return five_point(image, landmarks, size)
    if alignment == "vggface":
        return vggface(image, box, landmarks, size)
    raise ValueError(f"unknown alignment '{alignment}'")


__all__ = ["InputSpec", "crop_shape", "pack", "unpack", "ARCFACE_112", "five_point", "vggface", "align"]
