"""What gallery searches and listings return."""

from __future__ import annotations

from dataclasses import dataclass


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
    enrolled_at: float
