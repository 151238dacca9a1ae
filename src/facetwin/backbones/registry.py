"""Backbone registry: one entry point, ``get_backbone(name, **options)``, and the default name.

Each factory imports its backbone only when asked for, so choosing ``sface`` never imports torch.
"""

from __future__ import annotations

from collections.abc import Callable

from facetwin.backbones.base import Backbone
from facetwin.errors import FacetwinError

DEFAULT_BACKBONE = "sface"


def _sface(**options) -> Backbone:
    from facetwin.backbones.sface import SFace

    return SFace(**options)


def _vggface(**options) -> Backbone:
    from facetwin.backbones.vggface_backbone import VGGFaceBackbone

    return VGGFaceBackbone(**options)


def _dlib(**options) -> Backbone:
    from facetwin.backbones.dlib import DlibBackbone

    return DlibBackbone(**options)


_REGISTRY: dict[str, Callable[..., Backbone]] = {"sface": _sface, "vggface": _vggface, "dlib": _dlib}


def backbone_names() -> list[str]:
    """Names accepted by :func:`get_backbone`."""
    return sorted(_REGISTRY)


def get_backbone(name: str, **options) -> Backbone:
    """Create the backbone ``name``; options are backbone-specific (weights file, precision, ...)."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise FacetwinError(f"unknown backbone '{name}'; choose one of: {', '.join(backbone_names())}.") from None
    return factory(**options)


def make_backbone(name: str, weights: str | None = None) -> Backbone:
    """The backbone of a training run (``weights`` is the weights file, for backbones that take one)."""
    return get_backbone(name, **({"weights": weights} if weights else {}))
