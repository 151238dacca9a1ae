"""The face chip dlib's face recognition network expects: 150×150, padding 0.25, as ``dlib.get_face_chip`` makes it.

dlib (``get_face_chip_details`` + ``extract_image_chip``): five template points in a unit square, moved by
``(padding + p) / (1 + 2 padding) * size`` into chip pixels; the least-squares similarity transform from those to
the landmarks in the image gives a rotation angle, a scale and the image point of the chip centre; chip pixel 0
maps to ``centre - (size * scale - 1) / 2`` and pixel ``size - 1`` to ``centre + (size * scale - 1) / 2`` (rotated
by the angle). Pixels are sampled bilinearly; a pixel whose 2×2 neighbourhood leaves the image is black; values
are truncated to integers. When the chip covers more than twice its size in the image, dlib samples from an image
pyramid (halving until less than twice); here ``cv2.pyrDown`` plays that part (the same 5-tap filter, not
bit-exact).

Two sets of landmarks can drive it:

- dlib's own 5-point shape model (eye corners and the base of the nose): :data:`DLIB_TEMPLATE`, dlib's numbers;
- YuNet's 5 landmarks (eye centres, nose tip, mouth corners): :data:`YUNET_TEMPLATE`, the mean position of
  YuNet's landmarks in dlib's unit square, measured on lfw-dev people outside ``pairs.txt`` by
  ``benchmarks/dlib_alignment.py`` (dlib's 5-point model on dlib's detector's box gives the chip frame).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from facetwin.vision.geometry import similarity_transform

CHIP_SIZE = 150
PADDING = 0.25

# dlib's 5-point template (get_face_chip_details), in its landmark order: image-right eye outer and inner
# corner, image-left eye outer and inner corner, bottom of the nose.
DLIB_TEMPLATE = np.array(
    [
        [0.8595674595992, 0.2134981538014],
        [0.6460604764104, 0.2289674387677],
        [0.1205750620789, 0.2137274526848],
        [0.3340850613712, 0.2290642403242],
        [0.4901123135679, 0.6277975316475],
    ]
)

# YuNet's landmarks (image-left eye, image-right eye, nose tip, image-left and image-right mouth corner) in the
# same unit square: the mean over 1,484 faces of lfw-dev people in no pair (spread 0.03-0.08), printed by
# ``python benchmarks/dlib_alignment.py``.
YUNET_TEMPLATE = np.array(
    [
        [0.2289, 0.2068],
        [0.7818, 0.2073],
        [0.5024, 0.5223],
        [0.2689, 0.7657],
        [0.7424, 0.7724],
    ]
)


def chip_matrix(
    points: np.ndarray, template: np.ndarray, size: int = CHIP_SIZE, padding: float = PADDING
) -> np.ndarray:
    """2×3 affine matrix taking chip pixel ``(x, y, 1)`` to image coordinates, computed as dlib does."""
    chip_points = (padding + np.asarray(template, np.float64)) / (2 * padding + 1) * size
    to_image = similarity_transform(chip_points, np.asarray(points, np.float64).reshape(-1, 2))
    linear = to_image[:, :2]
    angle = math.atan2(linear[1, 0], linear[0, 0])
    scale = math.hypot(linear[0, 0], linear[1, 0])
    centre = linear @ np.array([size / 2.0, size / 2.0]) + to_image[:, 2]
    step = (size * scale - 1.0) / (size - 1.0)  # image distance between neighbouring chip pixels
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]) * step
    offset = centre - rotation @ np.array([(size - 1) / 2.0, (size - 1) / 2.0])
    return np.hstack([rotation, offset[:, None]])


def _sample(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Bilinear sampling with dlib's rules (black outside, truncation to uint8)."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    px = matrix[0, 0] * xs + matrix[0, 1] * ys + matrix[0, 2]
    py = matrix[1, 0] * xs + matrix[1, 1] * ys + matrix[1, 2]
    left, top = np.floor(px).astype(np.int64), np.floor(py).astype(np.int64)
    height, width = image.shape[:2]
    inside = (left >= 0) & (top >= 0) & (left + 1 < width) & (top + 1 < height)
    left, top = np.where(inside, left, 0), np.where(inside, top, 0)
    fx, fy = (px - left)[..., None], (py - top)[..., None]
    img = image.astype(np.float64)
    upper = (1 - fx) * img[top, left] + fx * img[top, left + 1]
    lower = (1 - fx) * img[top + 1, left] + fx * img[top + 1, left + 1]
    values = (1 - fy) * upper + fy * lower
    return np.where(inside[..., None], values, 0.0).astype(np.uint8)


def extract_chip(image: np.ndarray, matrix: np.ndarray, size: int = CHIP_SIZE) -> np.ndarray:
    """The ``(size, size, 3)`` chip of an RGB uint8 image for a :func:`chip_matrix`."""
    side = math.hypot(matrix[0, 0], matrix[1, 0]) * (size - 1) + 1  # the chip's extent in the image
    levels = 0
    while (side / 2.0**(levels + 1)) ** 2 > size * size:
        levels += 1
    if levels:
        corners = matrix @ np.array([[0, size - 1, 0, size - 1], [0, 0, size - 1, size - 1], [1, 1, 1, 1]], float)
        margin = 2.0 ** (levels + 2)
        x0, y0 = (max(0, int(math.floor(v - margin))) for v in corners.min(axis=1))
        x1 = min(image.shape[1], int(math.ceil(corners[0].max() + margin)) + 1)
        y1 = min(image.shape[0], int(math.ceil(corners[1].max() + margin)) + 1)
        image = image[y0:y1, x0:x1] if x1 > x0 and y1 > y0 else image[:1, :1] * 0
        matrix = matrix - np.array([[0, 0, x0], [0, 0, y0]], float)
        for _ in range(levels):
            image = cv2.pyrDown(image)
            matrix = matrix / 2.0
    return _sample(np.ascontiguousarray(image), matrix, size)


def face_chip(
    image: np.ndarray, points: np.ndarray, template: np.ndarray = YUNET_TEMPLATE, size: int = CHIP_SIZE,
    padding: float = PADDING,
) -> np.ndarray:
    """dlib's chip of the face whose 5 landmarks (in ``template``'s order) are ``points``."""
    return extract_chip(image, chip_matrix(points, template, size, padding), size)


__all__ = ["CHIP_SIZE", "PADDING", "DLIB_TEMPLATE", "YUNET_TEMPLATE", "chip_matrix", "extract_chip", "face_chip"]
