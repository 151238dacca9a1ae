"""Measured decision rules of plain models other than a backbone's own default, keyed by model source.

Each entry was printed by ``python benchmarks/calibrate_backbones.py --backbone NAME [--tta flip]`` on lfw-dev
(3,000 pairs): the best-accuracy threshold over all pairs and the logistic fit of same-person on distance.
A model without an entry has no threshold: it needs a trained run or an explicit threshold.
"""

from __future__ import annotations

from facetwin.backbones.base import Calibration

CALIBRATIONS: dict[str, Calibration] = {
    # 5-fold accuracy 99.10 % ± 0.23 (plain sface: 99.03 % ± 0.27)
    "sface:flip": Calibration(threshold=0.6629, slope=-24.6360, intercept=16.7673),
    # 98.97 % ± 0.16 (plain dlib: 98.60 % ± 0.17)
    "dlib:flip": Calibration(threshold=0.0897, slope=-133.3290, intercept=12.3457),
    # 99.23 % ± 0.20
    "sface+dlib": Calibration(threshold=0.3966, slope=-43.0192, intercept=17.2263),
    # 99.27 % ± 0.17: the most accurate plain model
    "sface+dlib:flip": Calibration(threshold=0.3935, slope=-42.3619, intercept=16.7477),
}
