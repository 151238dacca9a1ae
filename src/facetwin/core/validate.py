"""Checks of values that come from outside (names, numbers, arrays read back from disk), each failing with
one sentence."""

from __future__ import annotations

import math
import unicodedata

import numpy as np

from facetwin.errors import FacetwinError

MAX_NAME = 200  # characters of a person's name
_BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def person_name(name: object) -> str:
    """A person's name as stored: stripped, 1-200 printable characters, no control, format or bidi characters,
    no path separators and no ``..`` (names show up in URLs, file listings and terminals)."""
    if not isinstance(name, str):
        raise FacetwinError(f"a person's name must be text, not {type(name).__name__}.")
    text = unicodedata.normalize("NFC", name.strip())
    if not text:
        raise FacetwinError("a person's name cannot be empty.")
    shown = repr(text[:40]) + ("..." if len(text) > 40 else "")
    if len(text) > MAX_NAME:
        raise FacetwinError(f"the person's name {shown} has {len(text)} characters; at most {MAX_NAME} are allowed.")
    for char in text:
        if char in _BIDI or unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            raise FacetwinError(
                f"the person's name {shown} holds the invisible or control character U+{ord(char):04X}; "
                "use printable characters only."
            )
    if "/" in text or "\\" in text or ".." in text:
        raise FacetwinError(f"the person's name {shown} may not contain '/', '\\' or '..'.")
    return text


def finite_number(value: float | None, option: str, *, positive: bool = False) -> None:
    """``option`` (e.g. ``--lr``) must be a finite number (and > 0 with ``positive``) when given."""
    if value is None:
        return
    if not math.isfinite(value) or (positive and value <= 0):
        kind = "a positive finite number" if positive else "a finite number"
        raise FacetwinError(f"{option} must be {kind}, got {value}.")


def finite_array(array, what: str) -> np.ndarray:
    """``array`` as a numpy array; refuses NaN or infinity with a sentence naming ``what``."""
    array = np.asarray(array)
    if array.dtype.kind in "fc" and not np.isfinite(array).all():
        raise FacetwinError(f"{what} holds NaN or infinite values.")
    return array


def all_finite_tensors(state: dict) -> str | None:
    """The name of the first tensor of a state dict holding NaN or infinity, or None when all are finite."""
    import torch

    for key, value in state.items():
        if isinstance(value, dict):
            bad = all_finite_tensors(value)
            if bad is not None:
                return f"{key}.{bad}"
        elif isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all():
            return str(key)
    return None


def top_k(value: int, option: str = "--top-k", limit: int = 1000) -> int:
    """A number of candidates: 1..limit."""
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= limit:
        raise FacetwinError(f"{option} must be a whole number from 1 to {limit}, got {value!r}.")
    return value
