"""Backbone registry: ``get_backbone("sface")``, ``get_backbone("vggface", weights=..., precision=...)``."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import FacetwinError
from .base import Backbone, Calibration, InputSpec


def _sface(**options) -> Backbone:
    from .sface import SFace

    return SFace(**options)


def _vggface(**options) -> Backbone:
    from .vggface_backbone import VGGFaceBackbone

    return VGGFaceBackbone(**options)


def _dlib(**options) -> Backbone:
    from .dlib import DlibBackbone

    return DlibBackbone(**options)


_REGISTRY: dict[str, Callable[..., Backbone]] = {"sface": _sface, "vggface": _vggface, "dlib": _dlib}
DEFAULT_BACKBONE = "sface"


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


__all__ = ["Backbone", "Calibration", "InputSpec", "backbone_names", "get_backbone", "DEFAULT_BACKBONE"]
