"""What a network family declares about each of its backbones, in its package's ``__init__.py`` (data only).

The registry (``registry.py``) collects the ``ENTRIES`` of every sub-package of ``facetwin/backbones``, so a new
trunk is one new folder: its network, its weights reader, its runtime, and an ``__init__.py`` listing
:class:`Entry` objects. Nothing heavy is imported until a backbone is made.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class WeightsFile:
    """A weights file the user fetches or imports once (``facetwin weights fetch|import NAME``).

    ``known`` maps the SHA-256 of each accepted file to its form (e.g. ``"float"``, ``"int8"``); a file unknown by
    hash is accepted when ``recognise`` (``"module:function"``, ``path -> form``, raising ``FacetwinError``)
    recognises it. ``member`` is the file inside a zip archive at ``url`` (None: ``url`` is the file itself).
    """

    filename: str
    url: str
    known: dict[str, str]
    recognise: str
    licence: str
    licence_url: str
    member: str | None = None


@dataclass(frozen=True)
class Entry:
    """One backbone name: the class that makes it (``"module:Class"``), fixed constructor options, and the
    weights file it needs when they are not shipped with facetwin."""

    name: str
    factory: str
    summary: str
    options: dict = field(default_factory=dict)
    weights: WeightsFile | None = None


def resolve(target: str):
    """The object that ``"package.module:attribute"`` names (imported now)."""
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


__all__ = ["Entry", "WeightsFile", "resolve"]
