"""What gallery searches and listings return."""

from __future__ import annotations

from dataclasses import dataclass

IDENTIFY_TOP_K = 3  # candidates an identification lists by default (CLI, API and HTTP alike)
MAX_IDENTIFY_TOP_K = 100


@dataclass
class Match:
    person: str
    distance: float
    probability: float


@dataclass
class IdentifyResult:
    """``person`` is the best match within the model's threshold, else ``"unknown"``."""

    person: str
    matches: list[Match]
    method: str  # "exact" or the approximate index that answered
    threshold: float
    face: dict | None = None


@dataclass
class PersonInfo:
    name: str
    embeddings: int
    enrolled_at: str  # when the person was first enrolled: ISO 8601, UTC (e.g. "2026-12-02T18:30:00+00:00")
