"""Training augmentation of aligned crops, before the frozen part of the trunk, with a cache that stays valid.

``Augment(variants=V, seed=S, degrade=[...])`` defines ``V`` augmented copies of every crop; copy ``v`` of a crop
is a pure function of (crop, ``v``, ``S``): a mirror (half of them), a shift of up to 6 % of the side, brightness,
contrast and colour changes, and, when asked, one of the domain shifts of :mod:`facetwin.training.degrade`
(placed with a face template, as the crop is aligned). Because a copy is a pure function, its frozen features are
cached like the clean ones: the cache folder's key holds ``Augment.describe()`` and ``v`` (see ``features.py``),
so the frozen part runs ``V + 1`` times per image once, and each epoch then draws, for every pair side, the clean
row or one of the ``V`` copies: an epoch still costs only the trainable part.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facetwin.training.degrade import degrade, parse_shifts, rng_for


@dataclass(frozen=True)
class Augment:
    variants: int
    seed: int = 0
    degrade: tuple[str, ...] = ()
    shift: float = 0.06
    brightness: float = 0.25
    colour: float = 0.08

    @classmethod
    def from_config(cls, config) -> Augment | None:
        """The augmentation of a :class:`TrainConfig` (``None`` when ``augment`` is 0)."""
        if not config.augment:
            return None
        return cls(int(config.augment), int(config.seed), tuple(parse_shifts(config.augment_degrade)))

    def describe(self) -> dict:
        return {
            "variants": self.variants,
            "seed": self.seed,
            "degrade": list(self.degrade),
            "flip": 0.5,
            "shift": self.shift,
            "brightness": self.brightness,
            "colour": self.colour,
            "version": 1,
        }

    def apply(self, crop: np.ndarray, variant: int) -> np.ndarray:
        """Copy ``variant`` (1..variants) of one RGB uint8 crop."""
        rng = rng_for(crop, self.seed, f"augment{variant}")
        out = crop[:, ::-1] if rng.random() < 0.5 else crop
        h, w = out.shape[:2]
        dx, dy = rng.uniform(-self.shift, self.shift, 2) * (w, h)
        out = cv2.warpAffine(
            np.ascontiguousarray(out), np.float32([[1, 0, dx], [0, 1, dy]]), (w, h), borderMode=cv2.BORDER_REPLICATE
        )
        gain = rng.uniform(1 - self.brightness, 1 + self.brightness)
        contrast = rng.uniform(1 - self.brightness, 1 + self.brightness)
        tint = rng.uniform(1 - self.colour, 1 + self.colour, 3)
        f = out.astype(np.float32)
        mean = f.mean()
        f = ((f - mean) * contrast + mean) * gain * tint
        out = np.clip(f + 0.5, 0, 255).astype(np.uint8)
        if self.degrade:
            pick = int(rng.integers(len(self.degrade) + 1))  # one chance in len+1 of no shift
            if pick < len(self.degrade):
                out = degrade(self.degrade[pick], out, self.seed + variant)
        return out

    def batch(self, crops: np.ndarray, variant: int) -> np.ndarray:
        return np.stack([self.apply(c, variant) for c in crops])
