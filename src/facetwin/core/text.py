"""Words in messages: counts with the right plural (``1 fold``, ``2 folds``, ``1 person``, ``3 people``)."""

from __future__ import annotations

IRREGULAR = {"person": "people"}


def count(n: int, singular: str, plural: str | None = None) -> str:
    """``f"{n} {word}"`` with ``word`` singular for exactly one, else its plural (``s`` added unless given)."""
    word = singular if n == 1 else plural or IRREGULAR.get(singular, singular + "s")
    return f"{n:,} {word}"


__all__ = ["count"]
