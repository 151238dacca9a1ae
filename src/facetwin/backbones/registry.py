"""Backbone registry: one entry point, ``get_backbone(name, tta=..., **options)``, and the default name.

``name`` is one backbone (``sface``) or a ``+``-joined list (``sface+dlib``: a :class:`Composite`);
``tta="flip"`` adds mirror averaging to each part (:class:`Flipped`). A model's *source* string writes the
same as ``NAME[:flip]`` (what galleries record and ``facetwin.load`` accepts). Each factory imports its
backbone only when asked for, so choosing ``sface`` never imports torch.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from pathlib import Path

from facetwin.backbones.base import Backbone
from facetwin.backbones.calibrations import calibration_of
from facetwin.backbones.entry import Entry, resolve
from facetwin.errors import FacetwinError

DEFAULT_BACKBONE = "sface"
TTA_CHOICES = ("none", "flip")


@cache
def entries() -> dict[str, Entry]:
    """Every backbone name and its :class:`Entry`: the ``ENTRIES`` of each sub-package of ``facetwin/backbones``."""
    found = {}
    for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if module.ispkg:
            for entry in getattr(importlib.import_module(f"{__package__}.{module.name}"), "ENTRIES", ()):
                found[entry.name] = entry
    return found


def entry(name: str) -> Entry:
    """The entry of one backbone name, or one sentence listing the names."""
    try:
        return entries()[name]
    except KeyError:
        raise FacetwinError(f"unknown backbone '{name}'; choose one of: {', '.join(backbone_names())}.") from None


def backbone_names() -> list[str]:
    """Names accepted by :func:`get_backbone` (and any ``+``-joined list of them)."""
    return sorted(entries())


def split_source(source: str) -> tuple[str, str]:
    """``("sface+dlib", "flip")`` from ``"sface+dlib:flip"``; ``(name, "none")`` without a suffix."""
    name, _, tta = str(source).partition(":")
    return name, tta or "none"


def source_of(name: str, tta: str = "none") -> str:
    """The source string of a plain model (see the module docstring)."""
    return name if tta in (None, "none") else f"{name}:{tta}"


def is_backbone_name(source: str) -> bool:
    """Whether ``source`` names plain backbones (``sface``, ``sface+dlib``, ``dlib:flip``, ...)."""
    name, tta = split_source(source)
    return tta in TTA_CHOICES and all(part in entries() for part in name.split("+"))


def get_backbone(name: str, tta: str | None = None, **options) -> Backbone:
    """Create backbone ``name`` (``+``-joined: a composite; ``NAME:flip`` = ``tta="flip"``); options are
    backbone-specific (weights file, precision, ...) and only for a single backbone."""
    name, suffix = split_source(name)
    tta = tta or suffix
    if tta not in TTA_CHOICES:
        raise FacetwinError(f"unknown test-time augmentation '{tta}'; choose one of: {', '.join(TTA_CHOICES)}.")
    names = name.split("+")
    for part in names:
        entry(part)
    if len(names) > 1 and options:
        raise FacetwinError(f"backbone options {sorted(options)} apply to a single backbone, not to {name}.")
    parts = [_single(n, tta, **options) for n in names]
    if len(parts) == 1:
        return parts[0]
    from facetwin.backbones.composite import Composite

    return Composite(parts, calibration_of(source_of(name, tta)))


def _single(name: str, tta: str, **options) -> Backbone:
    found = entry(name)
    if found.weights is not None and "weights" not in options:
        from facetwin.backbones.licensed import installed_weights

        options["weights"] = installed_weights(found).path
    backbone = resolve(found.factory)(**found.options, **options)
    if tta == "none":
        return backbone
    from facetwin.backbones.tta import Flipped

    return Flipped(backbone, calibration_of(source_of(name, tta)))


def make_backbone(name: str, weights: str | None = None, tta: str = "none") -> Backbone:
    """The backbone of a training run (``weights`` is the weights file, for backbones that take one)."""
    return get_backbone(name, tta=tta, **({"weights": weights} if weights else {}))
