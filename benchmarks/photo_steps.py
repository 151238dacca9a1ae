"""Two choices of the photo pipeline, each timed against its alternative in one run, rounds interleaved.

    python benchmarks/photo_steps.py [--rounds 5]

1. Decoding: ``vision.io.load_image`` (complete upright JPEGs through OpenCV) against the Pillow path it replaced
   (``Image.open`` + ``exif_transpose`` + ``to_rgb``), ms per photo; the arrays are compared too.
2. YuNet threads: the whole default pipeline (``facetwin.load("sface").embed([photo])``) with YuNet's onnxruntime
   session on 1 thread (the default) and on 2, ms per photo, on small photos (120 lfw-dev + 118 celebrity5, as
   ``photo_speed.py --side-by-side``) and on large ones (``deepface_tests`` and ``face_recognition_examples``).

Medians over rounds of the mean per photo; the load average is printed (only the ratios within one run mean much).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


def _files(folder: Path, limit: int | None = None) -> list[Path]:
    files = sorted(f for f in folder.rglob("*") if f.suffix.lower() in SUFFIXES)
    return files[:limit] if limit else files


def _pillow(path: Path) -> np.ndarray:
    from PIL import Image, ImageOps

    from facetwin.vision.io import to_rgb

    with Image.open(path) as img:
        img.load()
        return to_rgb(ImageOps.exif_transpose(img))


def _interleaved(variants: dict, files: list[Path], rounds: int) -> dict[str, float]:
    """Median over rounds of the mean ms per file of each variant (failures timed like the others)."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, run in variants.items():
            start = time.perf_counter()
            for f in files:
                try:
                    run(f)
                except Exception:  # noqa: BLE001 - a photo without a face costs its time like any other
                    pass
            times[name].append(1000 * (time.perf_counter() - start) / len(files))
    return {name: statistics.median(v) for name, v in times.items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    small = _files(DATA / "lfw-dev" / "images", 120) + _files(DATA / "celebrity5")
    large = _files(DATA / "deepface_tests") + _files(DATA / "face_recognition_examples")
    if not small or not large:
        print(f"{DATA}: the shared photo sets are missing", file=sys.stderr)
        return 2
    import facetwin
    from facetwin.vision import yunet
    from facetwin.vision.io import load_image

    jpegs = [f for f in small + large if f.suffix.lower() in (".jpg", ".jpeg")]
    equal = sum(np.array_equal(load_image(f), _pillow(f)) for f in jpegs)
    decode = _interleaved({"load_image": load_image, "pillow": _pillow}, jpegs, args.rounds)
    print(f"decoding, {len(jpegs)} JPEG files (arrays equal to Pillow's: {equal} of {len(jpegs)}):")
    for name, ms in decode.items():
        print(f"  {name:<12}{ms:8.3f} ms/photo")

    model = facetwin.load("sface")
    sessions = {"yunet 1 thread": yunet.build(1), "yunet 2 threads": yunet.build(2)}

    def with_session(session):
        def run(path):
            yunet._session = session
            return model.embed([path])

        return run

    variants = {name: with_session(session) for name, session in sessions.items()}
    for label, files in (("small photos", small), ("large photos", large)):
        _interleaved(variants, files[:10], 1)  # warm-up
        result = _interleaved(variants, files, args.rounds)
        print(f"whole pipeline, {label} ({len(files)}):")
        for name, ms in result.items():
            print(f"  {name:<16}{ms:8.3f} ms/photo")
    yunet._session = None
    print(f"load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
