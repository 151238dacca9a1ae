"""Which face of a photo is *the* face: the rule every one-face-per-photo step uses (``--face main|largest``).

``main`` (the default) ranks faces by prominence: the part of the box inside the image, times the detector's
score, times a Gaussian weight of the box centre's distance from the image centre,

    visible_area × score × exp(-3 × offset² / (half diagonal)²)

so a face at a corner needs about 20× the area of a centred one to win, and one halfway there about 2×.
``largest`` is the largest box (facetwin before 0.2). Chosen by ``benchmarks/face_choice.py`` (README): on
lfw-dev it picks the named person in 615 of the 616 multi-face photos whose person can be told by identity
(largest: 605) and lifts plain sface from 99.03 % to 99.27 % (29 errors to 22); on the multi-person photos of
celebrity5 and deepface_tests it is right in 9 of 9, like largest. insightface's ``area - 2 × offset²`` is as
good on lfw-dev (616, 99.27 %) but wrong in celebrity5 (8 of 9): for small faces its offset term outweighs the
area, so it takes a central bystander over an off-centre subject; a centre weight of 4 does the same.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from facetwin.errors import FacetwinError
from facetwin.vision.detect import Face

FACE_RULES = ("main", "largest")
DEFAULT_FACE_RULE = "main"
CENTRE_WEIGHT = 3.0


def check_rule(rule: str) -> str:
    """``rule`` if it is one of :data:`FACE_RULES`, else one clear error."""
    if rule not in FACE_RULES:
        raise FacetwinError(f"unknown face rule '{rule}'; choose one of: {', '.join(FACE_RULES)}.")
    return rule


def prominence(face: Face, width: int, height: int, centre_weight: float = CENTRE_WEIGHT) -> float:
    """How much ``face`` looks like the subject of a ``width`` × ``height`` photo (see the module docstring)."""
    x, y, w, h = (float(v) for v in face.box)
    x0, y0, x1, y1 = max(x, 0.0), max(y, 0.0), min(x + w, float(width)), min(y + h, float(height))
    visible = max(x1 - x0, 0.0) * max(y1 - y0, 0.0)
    offset2 = ((x0 + x1) / 2 - width / 2) ** 2 + ((y0 + y1) / 2 - height / 2) ** 2
    half_diagonal2 = (width * width + height * height) / 4.0
    score = float(face.score) if math.isfinite(face.score) else 0.0
    return visible * max(score, 0.0) * math.exp(-centre_weight * offset2 / max(half_diagonal2, 1.0))


def rank_faces(faces: Sequence[Face], width: int, height: int, rule: str = DEFAULT_FACE_RULE) -> list[Face]:
    """``faces`` ordered by ``rule``, the chosen face first (ties keep the detector's order)."""
    check_rule(rule)
    if rule == "largest":
        return sorted(faces, key=lambda f: f.area, reverse=True)
    return sorted(faces, key=lambda f: prominence(f, width, height), reverse=True)


__all__ = ["FACE_RULES", "DEFAULT_FACE_RULE", "check_rule", "prominence", "rank_faces"]
