"""Face detection with YuNet (OpenCV Zoo, int8): boxes, 5 landmarks, scores.

YuNet runs in onnxruntime with ``cv2.FaceDetectorYN``'s decoding (:mod:`facetwin.yunet`: same detections to
1e-4 px, about twice as fast as OpenCV 5's engine).

- Any photo size: images larger than ``max_side`` are downscaled for detection and the boxes and landmarks
  mapped back to original pixels (a 4,352-px photo costs the same as a 640-px one).
- Tight face crops (AT&T, LFW-style thumbnails): when nothing is found, the image is detected again with a
  border around it, since YuNet misses faces that touch the frame.
- Tiny images (shorter side below ``MIN_SIDE`` pixels) have no detectable face: ``[]``.
- Thread safety: one onnxruntime session serves all threads; :func:`detect_faces` is safe from any thread.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facetwin.vision import yunet

MAX_SIDE = 640  # detection resolution: longer side of the image the detector sees
MIN_SIDE = 16  # below this no face can be found
SCORE_THRESHOLD = 0.7
NMS_THRESHOLD = 0.3
TOP_K = 5000
PAD_FRACTION = 0.25  # border added (each side, fraction of the side) for the second try on tight crops


@dataclass
class Face:
    """One detected face in original-image pixels."""

    box: tuple[float, float, float, float]  # x, y, w, h
    landmarks: np.ndarray  # (5, 2): right eye, left eye, nose tip, right mouth corner, left mouth corner
    score: float

    @property
    def area(self) -> float:
        return float(self.box[2] * self.box[3])

    def to_dict(self) -> dict:
        """JSON-able form: box rounded to 0.1 px, landmarks, score."""
        return {
            "box": [round(float(v), 1) for v in self.box],
            "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in self.landmarks],
            "score": round(float(self.score), 4),
        }


def detect_faces(
    image: np.ndarray, *, max_side: int = MAX_SIDE, score_threshold: float = SCORE_THRESHOLD
) -> list[Face]:
    """Faces in an RGB uint8 image ``(H, W, 3)``, largest first (gray ``(H, W)`` is accepted too)."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    height, width = image.shape[:2]
    if min(height, width) < MIN_SIDE:
        return []
    scale = min(1.0, max_side / max(height, width))
    small = image
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        scale_x, scale_y = size[0] / width, size[1] / height
    else:
        scale_x = scale_y = 1.0
    found = yunet.detect(small, float(score_threshold), NMS_THRESHOLD, TOP_K)
    offset = (0.0, 0.0)
    if len(found) == 0:
        pad_y = round(small.shape[0] * PAD_FRACTION)
        pad_x = round(small.shape[1] * PAD_FRACTION)
        fill = [int(v) for v in small.reshape(-1, 3).mean(axis=0)]
        padded = cv2.copyMakeBorder(small, pad_y, pad_y, pad_x, pad_x, cv2.BORDER_CONSTANT, value=fill)
        found = yunet.detect(padded, float(score_threshold), NMS_THRESHOLD, TOP_K)
        offset = (float(pad_x), float(pad_y))
    faces: list[Face] = []
    for row in found:
        x, y, w, h = row[:4]
        x, y = (x - offset[0]) / scale_x, (y - offset[1]) / scale_y
        w, h = w / scale_x, h / scale_y
        marks = row[4:14].reshape(5, 2).astype(np.float64)
        marks[:, 0] = (marks[:, 0] - offset[0]) / scale_x
        marks[:, 1] = (marks[:, 1] - offset[1]) / scale_y
        faces.append(Face((float(x), float(y), float(w), float(h)), marks, float(row[14])))
    faces.sort(key=lambda f: f.area, reverse=True)
    return faces


__all__ = ["Face", "detect_faces", "MAX_SIDE", "SCORE_THRESHOLD"]
