"""Which face of a multi-face photo is the person's? The measurement behind ``--face main`` (vision/prominence.py).

For every photo of each set, every detected face is embedded with plain SFace. Then, per face rule:
- **judged photos**: photos with several faces whose person can be told by identity (one face is within cosine
  0.34 of the mean embedding of that person's one-face photos, and 0.1 closer than any other face): how often
  the rule picks that face;
- **lfw-dev pairs**: 5-fold accuracy of plain SFace when each photo is represented by the face the rule picks
  (threshold chosen on the other folds), and how many photos change face against ``largest``.

Rules: ``largest`` (area), ``insightface`` (area - 2 × squared offset of the box centre from the image centre),
``main`` (facetwin's default) and its centre weight swept.

    python benchmarks/face_choice.py [--data ../shared/data] [--sets lfw-dev/images celebrity5 deepface_tests]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from facetwin.backbones.sface.backbone import SFace
from facetwin.core.distances import normalize
from facetwin.evaluation.metrics import kfold_accuracy
from facetwin.evaluation.pairs_file import read_pairs
from facetwin.vision.align import align
from facetwin.vision.detect import detect_faces
from facetwin.vision.io import load_image
from facetwin.vision.prominence import CENTRE_WEIGHT, prominence

SUFFIXES = {".jpg", ".jpeg", ".png", ".pgm", ".webp"}
JUDGE_SIMILARITY, JUDGE_MARGIN = 0.34, 0.1


def insightface(face, width, height) -> float:
    x, y, w, h = face.box
    return w * h - 2.0 * ((x + w / 2 - width / 2) ** 2 + (y + h / 2 - height / 2) ** 2)


RULES = {
    "largest": lambda face, width, height: face.area,
    "insightface": insightface,
    **{
        f"main (centre weight {k:g})" if k != CENTRE_WEIGHT else "main (default)":
            (lambda face, width, height, k=k: prominence(face, width, height, k))
        for k in (1.0, 2.0, CENTRE_WEIGHT, 4.0)
    },
}


def scan(folder: Path, backbone: SFace) -> dict[str, tuple[list, np.ndarray, tuple[int, int]]]:
    """``relative path -> (faces, unit embeddings, (width, height))`` for every photo of ``folder``."""
    out = {}
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    for path in files:
        rgb = load_image(path)
        faces = detect_faces(rgb)
        crops = [align(rgb, f, "five_point", 112) for f in faces]
        emb = normalize(backbone.embed(np.stack(crops))) if crops else np.zeros((0, 128), np.float32)
        out[str(path.relative_to(folder))] = (faces, emb, (rgb.shape[1], rgb.shape[0]))
    return out


def pick(rule, faces, size) -> int:
    return int(np.argmax([rule(f, *size) for f in faces]))


def judged(photos: dict) -> list[tuple[str, int]]:
    """Multi-face photos whose person's face can be told by identity: ``(photo, index of that face)``."""
    by_person: dict[str, list] = {}
    for name, (faces, emb, _) in photos.items():
        if len(faces) == 1:
            by_person.setdefault(name.split("/")[0], []).append(emb[0])
    out = []
    for name, (faces, emb, _) in photos.items():
        reference = by_person.get(name.split("/")[0])
        if len(faces) < 2 or not reference:
            continue
        sims = emb @ normalize(np.mean(reference, axis=0)[None])[0]
        order = np.argsort(sims)[::-1]
        if sims[order[0]] >= JUDGE_SIMILARITY and sims[order[0]] - sims[order[1]] >= JUDGE_MARGIN:
            out.append((name, int(order[0])))
    return out


def pairs_accuracy(photos: dict, pairs_file: Path, rule) -> tuple[float, float, int]:
    pairs = read_pairs(pairs_file)

    def vector(name):
        faces, emb, size = photos[name]
        return emb[pick(rule, faces, size)] if faces else np.zeros(128, np.float32)

    d = np.array([1.0 - float(vector(p.a) @ vector(p.b)) for p in pairs.pairs])
    same = np.array([p.same for p in pairs.pairs])
    folds = np.array([p.fold for p in pairs.pairs])
    report = kfold_accuracy(d, same, folds)
    return report["accuracy"], report["accuracy_std"], int(round(len(d) * (1 - report["accuracy"])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--sets", nargs="+", default=["lfw-dev/images", "celebrity5", "deepface_tests"])
    args = parser.parse_args()
    backbone = SFace()
    for name in args.sets:
        folder = args.data / name
        started = time.perf_counter()
        photos = scan(folder, backbone)
        several = sum(1 for faces, _, _ in photos.values() if len(faces) > 1)
        cases = judged(photos)
        print(f"\n{name}: {len(photos)} photos, {several} with several faces, {len(cases)} judged by identity "
              f"({time.perf_counter() - started:.0f} s)")
        pairs_file = folder.parent / "pairs.txt"
        for label, rule in RULES.items():
            right = sum(1 for photo, target in cases if pick(rule, *photos[photo][::2]) == target)
            line = f"  {label:<26} right in {right:>4} of {len(cases)} judged photos"
            if pairs_file.is_file():
                accuracy, std, errors = pairs_accuracy(photos, pairs_file, rule)
                changed = sum(1 for faces, _, size in photos.values()
                              if len(faces) > 1 and pick(rule, faces, size) != pick(RULES["largest"], faces, size))
                line += f"; sface {accuracy * 100:.2f} % ± {std * 100:.2f} ({errors} errors), {changed} change face"
            print(line)
            for photo, target in cases:
                if label in ("largest", "insightface", "main (default)") and pick(rule, *photos[photo][::2]) != target:
                    print(f"      wrong: {photo}")


if __name__ == "__main__":
    main()
