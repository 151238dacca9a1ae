"""Domain shifts: pure functions ``(RGB image, seed, landmarks) -> RGB image`` of the same size.

Each shift imitates a camera unlike the photos a backbone was trained on; the randomness (noise, mask colour,
blur angle) comes from a generator seeded by ``seed`` and the image's own bytes, so one photo and one seed give
one result. ``landmarks`` are YuNet's five points (right eye, left eye, nose tip, right and left mouth corner)
in image pixels; ``None`` places a face template over the whole image (an aligned crop).

- ``lowres``: the image scaled so the eyes are ``eye_px`` (10) pixels apart, then back to its size (a face far
  from a CCTV camera);
- ``nir``: grey from a red-heavy mix (skin is bright in near infrared), harder contrast, the falling-off light of
  an infrared illuminator, sensor noise;
- ``mask``: the lower face (from just below the nose bridge to below the chin, cheek to cheek) covered by a
  mask-shaped polygon of a plain colour;
- ``jpeg``: motion blur (a 9-pixel line at a random angle), then JPEG quality 10.

Used by ``benchmarks/domain_shift.py`` on whole photos before detection, and as training augmentation on
aligned crops (``training/augment.py``).
"""

from __future__ import annotations

import zlib

import cv2
import numpy as np

SHIFTS = ("lowres", "nir", "mask", "jpeg")
# Five landmarks of a face that fills an aligned crop, as fractions of its side.
CROP_TEMPLATE = np.array([[0.36, 0.40], [0.64, 0.40], [0.50, 0.56], [0.39, 0.72], [0.61, 0.72]])


def rng_for(image: np.ndarray, seed: int, salt: str = "") -> np.random.Generator:
    """A generator determined by ``seed``, the image content and ``salt`` (a pure function of them)."""
    digest = zlib.crc32(np.ascontiguousarray(image).tobytes()) ^ zlib.crc32(salt.encode())
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, digest])


def _landmarks(image: np.ndarray, landmarks) -> np.ndarray:
    if landmarks is not None:
        return np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    h, w = image.shape[:2]
    return CROP_TEMPLATE * np.array([w, h])


def lowres(image: np.ndarray, seed: int = 0, landmarks=None, eye_px: float = 10.0) -> np.ndarray:
    """Downsample so the eyes are ``eye_px`` apart (never upsample), then back to the original size."""
    pts = _landmarks(image, landmarks)
    eyes = float(np.linalg.norm(pts[0] - pts[1]))
    scale = min(1.0, eye_px / max(eyes, 1e-6))
    h, w = image.shape[:2]
    small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def nir(image: np.ndarray, seed: int = 0, landmarks=None) -> np.ndarray:
    """Grey, contrast and noise like a near-infrared camera with an illuminator on its axis."""
    rng = rng_for(image, seed, "nir")
    rgb = image.astype(np.float32) / 255.0
    grey = 0.65 * rgb[..., 0] + 0.30 * rgb[..., 1] + 0.05 * rgb[..., 2]
    grey = np.clip((grey - 0.5) * rng.uniform(1.3, 1.6) + 0.5 + rng.uniform(0.0, 0.1), 0, 1) ** 0.8
    h, w = grey.shape
    pts = _landmarks(image, landmarks)
    cx, cy = pts[:, 0].mean(), pts[:, 1].mean()
    yy, xx = np.mgrid[0:h, 0:w]
    r2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / (0.5 * max(h, w)) ** 2
    grey = grey * (1.0 - 0.45 * np.clip(r2, 0, 1.5))  # the illuminator's light falls off from the face
    grey = grey + rng.normal(0.0, rng.uniform(0.03, 0.05), grey.shape)
    out = np.clip(grey * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.repeat(out[..., None], 3, axis=2)


MASK_COLOURS = ((173, 216, 230), (235, 235, 235), (40, 40, 45), (120, 160, 200), (90, 120, 90))


def mask(image: np.ndarray, seed: int = 0, landmarks=None) -> np.ndarray:
    """A mask-shaped polygon over nose, mouth and chin, placed from the landmarks."""
    rng = rng_for(image, seed, "mask")
    pts = _landmarks(image, landmarks)
    eye_mid = (pts[0] + pts[1]) / 2
    mouth_mid = (pts[3] + pts[4]) / 2
    down = mouth_mid - eye_mid  # eyes -> mouth
    length = float(np.linalg.norm(down)) or 1.0
    down = down / length
    side = np.array([-down[1], down[0]])  # perpendicular, across the face
    if np.dot(side, pts[1] - pts[0]) < 0:
        side = -side
    half = 0.95 * float(np.linalg.norm(pts[1] - pts[0]))

    def at(across: float, along: float) -> np.ndarray:
        return eye_mid + side * across * half + down * along * length

    top = 0.35 + rng.uniform(-0.05, 0.05)  # the nose bridge, a third of the way from the eyes to the mouth
    polygon = np.array(
        [at(-1.35, top + 0.25), at(-0.5, top), at(0.0, top - 0.05), at(0.5, top), at(1.35, top + 0.25),
         at(1.4, 1.3), at(0.8, 1.95), at(0.0, 2.15), at(-0.8, 1.95), at(-1.4, 1.3)]
    )
    colour = np.array(MASK_COLOURS[int(rng.integers(len(MASK_COLOURS)))], dtype=np.float32)
    out = image.copy()
    layer = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(layer, [np.round(polygon).astype(np.int32)], 255, lineType=cv2.LINE_AA)
    alpha = (layer.astype(np.float32) / 255.0)[..., None]
    shade = colour * rng.uniform(0.85, 1.0)
    out = (image.astype(np.float32) * (1 - alpha) + shade * alpha).round().clip(0, 255).astype(np.uint8)
    return out


def jpeg(image: np.ndarray, seed: int = 0, landmarks=None, quality: int = 10, blur: int = 9) -> np.ndarray:
    """Motion blur (a ``blur``-pixel line at a random angle), then JPEG at ``quality``."""
    rng = rng_for(image, seed, "jpeg")
    kernel = np.zeros((blur, blur), np.float32)
    kernel[blur // 2, :] = 1.0
    angle = float(rng.uniform(0, 180))
    rot = cv2.getRotationMatrix2D(((blur - 1) / 2, (blur - 1) / 2), angle, 1.0)
    kernel = cv2.warpAffine(kernel, rot, (blur, blur))
    kernel /= max(float(kernel.sum()), 1e-6)
    blurred = cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(blurred, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


_FUNCTIONS = {"lowres": lowres, "nir": nir, "mask": mask, "jpeg": jpeg}


def parse_shifts(text: str | None) -> list[str]:
    """``"lowres,nir"`` -> ``["lowres", "nir"]``; an unknown name is an error (``ValueError``)."""
    names = [s.strip() for s in (text or "").split(",") if s.strip()]
    unknown = [n for n in names if n not in _FUNCTIONS]
    if unknown:
        raise ValueError(f"unknown shift(s) {', '.join(unknown)}; choose from {', '.join(SHIFTS)}")
    return names


def degrade(name: str, image: np.ndarray, seed: int = 0, landmarks=None) -> np.ndarray:
    """Apply the shift ``name`` to an RGB uint8 image."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    return _FUNCTIONS[name](image, seed, landmarks)


def degrade_photo(name: str, image: np.ndarray, seed: int = 0) -> np.ndarray:
    """A whole photo shifted, the landmarks of its largest face (YuNet) placing the shift; template if none."""
    from facetwin.vision.detect import detect_faces

    faces = detect_faces(image)
    return degrade(name, image, seed, faces[0].landmarks if faces else None)
