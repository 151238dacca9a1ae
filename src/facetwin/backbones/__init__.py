"""Pretrained face networks split into a frozen trunk and a replaceable head (see ``base.py``)."""

from facetwin.backbones.base import Backbone, Calibration, InputSpec
from facetwin.backbones.registry import (
    DEFAULT_BACKBONE,
    TTA_CHOICES,
    backbone_names,
    get_backbone,
    is_backbone_name,
    make_backbone,
)

__all__ = [
    "Backbone",
    "Calibration",
    "InputSpec",
    "backbone_names",
    "get_backbone",
    "make_backbone",
    "DEFAULT_BACKBONE",
    "TTA_CHOICES",
    "is_backbone_name",
]
