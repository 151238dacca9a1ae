"""The pairs a model gets wrong under the k-fold protocol, listed and drawn: look at errors, not only at rates.

    python benchmarks/pair_errors.py --backbone sface --out /tmp/sface_errors.png
    python benchmarks/pair_errors.py --backbone sface+arcface-mbf+edgeface-xs --tta flip --out /tmp/errors.png

Every pair of the pairs file is scored with facetwin's own pipeline (as ``facetwin evaluate``); a pair is wrong when
its distance falls on the wrong side of its fold's threshold (chosen on the other folds). Each wrong pair is
printed (distance, threshold, faces found in each photo) and drawn as one row of the picture: each photo with
every detected face boxed (the chosen one green, the others red), then the aligned crop the model embedded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LFW = ROOT.parent / "shared" / "data" / "lfw-dev"
THUMB = 160


def wrong_pairs(model, pairs_file: Path, images: Path) -> list[dict]:
    """Each misclassified pair: files, same, distance, its fold's threshold."""
    from facetwin.evaluation.metrics import kfold_accuracy
    from facetwin.evaluation.pairs_file import read_pairs
    from facetwin.evaluation.protocol import score_pairs

    scored = score_pairs(pairs_file, images, model, progress=False)
    report = kfold_accuracy(scored.distances, scored.same, scored.folds)
    keys = np.unique(scored.folds)
    pairs = read_pairs(pairs_file).pairs
    wrong = []
    for i, pair in enumerate(pairs):
        threshold = report["thresholds"][int(np.searchsorted(keys, scored.folds[i]))]
        if (scored.distances[i] <= threshold) != bool(scored.same[i]):
            wrong.append({"a": pair.a, "b": pair.b, "same": bool(scored.same[i]),
                          "distance": float(scored.distances[i]), "threshold": threshold})
    print(f"{len(pairs)} pairs, accuracy {report['accuracy']:.2%}, {len(wrong)} wrong")
    return wrong


def panel(model, path: Path) -> tuple[np.ndarray, int]:
    """The photo with its faces boxed, beside the crop the model embedded (RGB uint8), and the faces found."""
    import cv2

    from facetwin.vision.align import InputSpec
    from facetwin.vision.detect import detect_faces
    from facetwin.vision.faces import face_crops
    from facetwin.vision.io import load_image

    rgb = load_image(path)
    crop = face_crops(rgb, InputSpec(112, "five_point"), no_face="center", face=model.face_rule)[0]
    drawn = np.ascontiguousarray(rgb.copy())
    chosen = crop.face.box if crop.face is not None else None
    faces = detect_faces(rgb)
    for face in faces:
        x, y, w, h = (int(round(v)) for v in face.box)
        colour = (0, 200, 0) if chosen is not None and np.allclose(face.box, chosen) else (220, 0, 0)
        cv2.rectangle(drawn, (x, y), (x + w, y + h), colour, 2)
    photo = cv2.resize(drawn, (THUMB, THUMB), interpolation=cv2.INTER_AREA)
    face_crop = cv2.resize(crop.crop, (THUMB, THUMB), interpolation=cv2.INTER_CUBIC)
    return np.concatenate([photo, face_crop], axis=1), len(faces)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="sface")
    p.add_argument("--tta", default="none")
    p.add_argument("--face", default="main", help="face rule (main or largest)")
    p.add_argument("--pairs", type=Path, default=LFW / "pairs.txt")
    p.add_argument("--images", type=Path, default=LFW / "images")
    p.add_argument("--out", type=Path, help="PNG of the wrong pairs")
    args = p.parse_args()
    if not args.pairs.is_file():
        print(f"{args.pairs}: pairs file not found", file=sys.stderr)
        return 2
    import facetwin

    model = facetwin.load(args.backbone, tta=args.tta, face=args.face)
    wrong = wrong_pairs(model, args.pairs, args.images)
    rows = []
    for pair in wrong:
        left, faces_a = panel(model, args.images / pair["a"])
        right, faces_b = panel(model, args.images / pair["b"])
        kind = "same person, judged different" if pair["same"] else "different people, judged same"
        print(f"  {kind}: {pair['a']} ({faces_a} faces) ~ {pair['b']} ({faces_b} faces): "
              f"distance {pair['distance']:.4f}, threshold {pair['threshold']:.4f}")
        rows.append(np.concatenate([left, np.full((THUMB, 8, 3), 255, np.uint8), right], axis=1))
    if args.out and rows:
        from PIL import Image

        Image.fromarray(np.concatenate(rows, axis=0)).save(args.out)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
