"""Measured decision rules of plain models other than a backbone's own default, keyed by model source.

Each entry was printed by ``python benchmarks/calibrate_backbones.py --backbone NAME [--tta flip]`` on lfw-dev
(3,000 pairs): the best-accuracy threshold over all pairs and the logistic fit of same-person on distance.
A model without an entry has no threshold: it needs a trained run or an explicit threshold.
"""

from __future__ import annotations

from facetwin.backbones.base import Calibration

CALIBRATIONS: dict[str, Calibration] = {}
