"""Measured decision rules of every plain model, keyed by model source (``NAME[+NAME...][:flip]``).

Each entry was printed by ``python benchmarks/calibrate_backbones.py --backbone NAME [--tta flip]`` on lfw-dev
(3,000 pairs; the main face of each photo; JSON in ``benchmarks/results/calibration/``): the best-accuracy threshold
over all pairs and the logistic fit of same-person on distance. The comment is the 5-fold accuracy (each fold's
threshold chosen on the other folds). A model without an entry has no threshold: it needs a trained run or an
explicit threshold.
"""

from __future__ import annotations

from facetwin.backbones.base import Calibration

CALIBRATIONS: dict[str, Calibration] = {
    # 99.27 % ± 0.44 (threshold 0.6666 = cosine similarity 0.333)
    "sface": Calibration(threshold=0.6666, slope=-33.3857, intercept=23.0557),
    # 99.37 % ± 0.41
    "sface:flip": Calibration(threshold=0.6655, slope=-33.2641, intercept=22.8073),
    # 98.87 % ± 0.29
    "dlib": Calibration(threshold=0.0934, slope=-175.5503, intercept=16.8843),
    # 99.23 % ± 0.29
    "dlib:flip": Calibration(threshold=0.0897, slope=-190.5214, intercept=17.3107),
    # 99.40 % ± 0.34
    "sface+dlib": Calibration(threshold=0.3967, slope=-62.9632, intercept=25.4958),
    # 99.30 % ± 0.41
    "sface+dlib:flip": Calibration(threshold=0.3929, slope=-61.2288, intercept=24.4625),
    # 99.47 % ± 0.24
    "arcface-mbf": Calibration(threshold=0.7708, slope=-36.2691, intercept=28.4064),
    # 99.63 % ± 0.24
    "arcface-mbf:flip": Calibration(threshold=0.7887, slope=-38.4599, intercept=30.1124),
    # 99.40 % ± 0.31
    "edgeface-xs": Calibration(threshold=0.7926, slope=-33.5832, intercept=26.2529),
    # 99.50 % ± 0.32
    "edgeface-xs:flip": Calibration(threshold=0.7853, slope=-33.0775, intercept=25.7974),
    # 99.30 % ± 0.40
    "edgeface-xxs": Calibration(threshold=0.7659, slope=-35.8098, intercept=27.7805),
    # 99.17 % ± 0.41
    "edgeface-xxs:flip": Calibration(threshold=0.7743, slope=-35.0089, intercept=27.1057),
    # 99.57 % ± 0.25
    "sface+arcface-mbf+edgeface-xs": Calibration(threshold=0.7908, slope=-38.8022, intercept=29.9356),
    # 99.47 % ± 0.29
    "sface+arcface-mbf+edgeface-xs:flip": Calibration(threshold=0.7904, slope=-38.6358, intercept=29.6578),
    # 99.67 % ± 0.18
    "arcface-mbf+edgeface-xs": Calibration(threshold=0.8096, slope=-38.1960, intercept=30.4086),
    # 99.70 % ± 0.22: the most accurate plain model
    "arcface-mbf+edgeface-xs:flip": Calibration(threshold=0.8112, slope=-38.2651, intercept=30.3612),
}
UNCALIBRATED = Calibration(threshold=float("nan"), slope=float("nan"), intercept=float("nan"))


def calibration_of(source: str) -> Calibration:
    """The measured rule of the plain model ``source``, or NaNs (no threshold) when it was never measured."""
    return CALIBRATIONS.get(source, UNCALIBRATED)


__all__ = ["CALIBRATIONS", "UNCALIBRATED", "calibration_of"]
