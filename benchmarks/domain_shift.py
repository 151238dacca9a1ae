"""Domain-shift benchmark: frozen backbone, head on frozen features, fine-tuned trunk layers; 5 person-disjoint folds.

From lfw-dev it builds shifted copies of the photos (``facetwin.training.degrade``: lowres, nir, mask, jpeg; each
a pure function of the photo and ``--seed``, applied to the whole photo before detection; written as JPEG
quality 95 except ``jpeg``, whose own quality-10 encoding is what the file holds before that), plus ``clean``
(the photos as they are) and ``att`` (../shared/data/att_faces, grey 92x112, 40 people: 5 folds of 8 people,
pairs drawn within each fold). Every row is ``facetwin.evaluation.crosstrain.cross_train_evaluate``: the model
tested on fold k is trained on the people outside fold k, its threshold is its own validation people's, nothing
is tuned on a test fold. Rows:

- ``frozen``: epochs 0, i.e. the backbone itself (the identity-initialised head; threshold from validation people);
- ``head``: the Siamese head trained on the frozen backbone's features;
- ``finetune@CUT`` (one per ``--cuts``): the head and the pretrained layers from CUT on, at ``--trunk-lr``;
- ``adapt``: exactly what ``facetwin train --adapt`` trains (``training/adapt.py``'s recipe).

Each trained row is compared with ``frozen`` in two ways: at the k-fold threshold (chosen on the other test folds'
distances, as ``facetwin evaluate`` scores a model: how well it ranks pairs) and at each model's own threshold (what
a user of the run gets). ``--folds N`` tests on the first N folds only (N trainings per row instead of 5).

Usage: ``python benchmarks/domain_shift.py --backbone arcface-mbf [--shifts lowres,nir,mask,jpeg,clean,att]
[--rows head,finetune,adapt] [--cuts blocks3,conv_sep] [--folds 2] [--train-seeds 0,1,2]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LFW = DATA / "lfw-dev"
ATT = DATA / "att_faces"
ALL = ("lowres", "nir", "mask", "jpeg", "clean", "att")


def _write_jpeg(path: Path, rgb: np.ndarray, quality: int = 95) -> None:
    import cv2

    from facetwin.core.paths import atomic_write_bytes

    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    atomic_write_bytes(path, data.tobytes())


def _limited_pairs(src: Path, dst: Path, limit: int | None) -> list[str]:
    """Copy the pairs file (the first ``limit`` same and different pairs of every fold); the images it names."""
    from facetwin.evaluation.pairs_file import read_pairs

    lines = src.read_text().splitlines()
    folds, per_fold = (int(x) for x in lines[0].split())
    n = min(limit or per_fold, per_fold)
    body = [line for line in lines[1:] if line.strip()]
    out = [f"{folds}\t{n}"]
    for k in range(folds):
        block = body[k * 2 * per_fold : (k + 1) * 2 * per_fold]
        out += block[:n] + block[per_fold : per_fold + n]
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text("\n".join(out) + "\n")
    pairs = read_pairs(dst).pairs
    return sorted({p.a for p in pairs} | {p.b for p in pairs})


def build_lfw(shifts: list[str], root: Path, limit: int | None, seed: int) -> None:
    """Shifted copies of the lfw-dev photos (of the people in the limited pairs), one detection per photo."""
    from tqdm import tqdm

    from facetwin.training.dataset import list_images
    from facetwin.training.degrade import degrade
    from facetwin.vision.detect import detect_faces
    from facetwin.vision.io import load_image

    names = _limited_pairs(LFW / "pairs.txt", root / "pairs.txt", limit)
    people = {n.split("/")[0] for n in names}
    files = [Path(f) for f in list_images(LFW / "images")[0] if Path(f).parent.name in people]
    for shift in shifts:
        (root / shift).mkdir(parents=True, exist_ok=True)
    todo = [f for f in files if any(not (root / s / "images" / f.parent.name / f.name).exists() for s in shifts)]
    for f in tqdm(todo, desc=f"shifting {len(todo)} photos", leave=False):
        image = load_image(f)
        faces = None
        for shift in shifts:
            out = root / shift / "images" / f.parent.name / f.name
            if out.exists():
                continue
            if shift == "clean":
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(f.read_bytes())
                continue
            if faces is None:
                faces = detect_faces(image)
            _write_jpeg(out, degrade(shift, image, seed, faces[0].landmarks if faces else None))


def build_att(root: Path, limit: int | None, seed: int, folds: int = 5) -> None:
    """att_faces in LFW naming (``sN/sN_000i.jpg``) with a pairs file of person-disjoint folds."""
    from facetwin.vision.io import load_image

    people = sorted((p for p in ATT.iterdir() if p.is_dir()), key=lambda p: int(p.name[1:]))
    images = {p.name: sorted(p.glob("*.pgm"), key=lambda f: int(f.stem)) for p in people}
    for name, files in images.items():
        for i, f in enumerate(files, start=1):
            out = root / "images" / name / f"{name}_{i:04d}.jpg"
            if not out.exists():
                out.parent.mkdir(parents=True, exist_ok=True)
                _write_jpeg(out, load_image(f))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(people))
    per_fold = min(limit or 150, 150)
    lines = [f"{folds}\t{per_fold}"]
    for k in range(folds):
        group = [people[i].name for i in order[k::folds]]
        same, diff = set(), set()
        while len(same) < per_fold:
            name = group[rng.integers(len(group))]
            a, b = sorted(rng.choice(len(images[name]), 2, replace=False) + 1)
            same.add(f"{name}\t{a}\t{b}")
        while len(diff) < per_fold:
            x, y = rng.choice(len(group), 2, replace=False)
            diff.add(f"{group[x]}\t{rng.integers(10) + 1}\t{group[y]}\t{rng.integers(10) + 1}")
        lines += sorted(same) + sorted(diff)
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")


def _pairs_file(folder: Path, folds: int | None) -> Path:
    """``folder/pairs.txt``, or a copy holding its first ``folds`` folds (each model is then trained once per fold)."""
    source = folder / "pairs.txt"
    if not folds:
        return source
    lines = [line for line in source.read_text().splitlines() if line.strip()]
    total, per_fold = (int(x) for x in lines[0].split())
    out = folder / f"pairs-first{folds}.txt"
    out.write_text("\n".join([f"{min(folds, total)}\t{per_fold}", *lines[1 : 1 + 2 * per_fold * folds]]) + "\n")
    return out


ROWS = {
    "frozen": {"epochs": 0, "augment": 0, "trainable_from": None},  # the backbone itself: nothing trains
    "head": {"trainable_from": None},  # the Siamese head on the frozen backbone's features
    "finetune": {},  # the head and the trunk from each --cuts stage on (a row per cut: finetune@CUT)
    "adapt": None,  # facetwin train --adapt: the recipe of training/adapt.py, whatever --cuts and the rates say
}


def run_shift(name: str, folder: Path, args, seed: int) -> dict:
    """The rows (``--rows``) for one shifted copy, trained with ``seed`` (which also draws the validation people);
    every figure printed."""
    from facetwin.evaluation.crosstrain import cross_train_evaluate
    from facetwin.training.adapt import adapt_options

    results = {}
    for row in args.rows:
        kind, _, cut = row.partition("@")
        if ROWS[kind] is None:
            options = adapt_options(args.backbone, {"seed": seed, "augment": args.augment, "pairs": args.pairs})
        else:
            options = {"trainable_from": cut or None, "epochs": args.epochs, "lr": args.lr, "trunk_lr": args.trunk_lr,
                       "seed": seed, "augment": args.augment, "pairs": args.pairs, **ROWS[kind]}
        t0 = time.perf_counter()
        r = cross_train_evaluate(_pairs_file(folder, args.folds), folder / "images", backbone=args.backbone,
                                 train_options=options, progress=not args.quiet)
        epoch_s = [f["epoch_seconds"] for f in r["per_fold"] if f.get("epoch_seconds")]
        results[row] = {
            "accuracy": r["accuracy"], "accuracy_std": r["accuracy_std"], "auc": r["auc"], "eer": r["eer"],
            "accuracy_kfold_threshold": r["accuracy_kfold_threshold"], "pairs": r["pairs"],
            "no_face": r["no_face"]["count"], "kept_epochs": [f["kept_epoch"] for f in r["per_fold"]],
            "epoch_seconds": float(np.mean(epoch_s)) if epoch_s else None,
            "seconds": time.perf_counter() - t0, "extraction": r["model"]["extraction"],
        }
        print(f"  {name:7s} seed {seed} {row:9s} acc {r['accuracy']:.4f} ± {r['accuracy_std']:.4f}  "
              f"kfold-thr acc {r['accuracy_kfold_threshold']:.4f}  AUC {r['auc']:.4f}  EER {r['eer']:.4f}  "
              f"kept epochs {results[row]['kept_epochs']}  epoch {results[row]['epoch_seconds'] or 0:.2f} s  "
              f"({results[row]['seconds']:.0f} s)", flush=True)
    for key, label in (("accuracy_kfold_threshold", "k-fold threshold"), ("accuracy", "own threshold")):
        base = 1 - results["frozen"][key]
        for row in [r for r in args.rows if r != "frozen"]:
            err = 1 - results[row][key]
            reduction = (base - err) / base if base > 0 else 0.0
            results[row]["error_reduction" if key == "accuracy" else "error_reduction_kfold"] = reduction
            print(f"  {name:7s} seed {seed} {row:9s} removes {reduction * 100:+.1f} % of the frozen errors at the "
                  f"{label} ({base * 100:.2f} % -> {err * 100:.2f} %)", flush=True)
    return results


def seed_summary(name: str, by_seed: dict) -> dict:
    """Mean, min and max over the training seeds of each row's accuracy and share of frozen errors removed."""
    out = {}
    for row in next(iter(by_seed.values())):
        out[row] = {}
        for acc_key, red_key in (("accuracy_kfold_threshold", "error_reduction_kfold"),
                                 ("accuracy", "error_reduction")):
            acc = [r[row][acc_key] for r in by_seed.values()]
            red = [r[row].get(red_key, 0.0) for r in by_seed.values()]
            out[row].update({f"{acc_key}_mean": float(np.mean(acc)), f"{acc_key}_min": float(np.min(acc)),
                             f"{acc_key}_max": float(np.max(acc)), f"{red_key}_mean": float(np.mean(red)),
                             f"{red_key}_min": float(np.min(red)), f"{red_key}_max": float(np.max(red))})
            print(f"  {name:7s} {len(acc)} seeds {row:9s} {acc_key:24s} {np.mean(acc):.4f} ({np.min(acc):.4f}-"
                  f"{np.max(acc):.4f})  removes {np.mean(red) * 100:+.1f} % ({np.min(red) * 100:+.1f} to "
                  f"{np.max(red) * 100:+.1f})", flush=True)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shifts", default=",".join(ALL), help=f"comma-separated, of {', '.join(ALL)}")
    p.add_argument("--limit", type=int, help="pairs of each kind per fold (lfw-dev has 300; att 150)")
    p.add_argument("--backbone", default="dlib")
    p.add_argument("--cuts", default="stage4", help="comma-separated --trainable-from of the fine-tuned rows "
                   "(one row finetune@CUT each)")
    p.add_argument("--folds", type=int, help="use the first N folds of the pairs file only (fewer trainings)")
    p.add_argument("--pairs", default=None, choices=["fresh", "fixed", "batch"], help="train --pairs")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--trunk-lr", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0, help="seed of the shifted copies")
    p.add_argument("--train-seeds", default=None,
                   help="comma-separated training seeds (each also draws the validation people); default --seed")
    p.add_argument("--augment", type=int, default=0, help="augmented copies per training image (train --augment)")
    p.add_argument("--rows", default="frozen,head,finetune",
                   help=f"comma-separated, of {', '.join(ROWS)} (frozen is always run: the others are measured "
                   "against it)")
    p.add_argument("--json", help="write every figure here")
    p.add_argument("--threads", type=int, default=2, help="torch threads (1 when two runs share 2 cores)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args()
    from facetwin.cli.options import configure_torch
    from facetwin.core import paths

    configure_torch(args.threads)
    shifts = [s.strip() for s in args.shifts.split(",") if s.strip()]
    asked = [r.strip() for r in args.rows.split(",") if r.strip() and r.strip() != "frozen"]
    cuts = [c.strip() for c in args.cuts.split(",") if c.strip()]
    args.rows = ["frozen", *[r2 for r in asked for r2 in ([f"{r}@{c}" for c in cuts] if r == "finetune" else [r])]]
    if any(r.partition("@")[0] not in ROWS for r in args.rows):
        print(f"unknown row(s) in --rows; choose from {', '.join(ROWS)}.", file=sys.stderr)
        return 2
    bad = [s for s in shifts if s not in ALL]
    if bad:
        print(f"unknown shift(s): {', '.join(bad)}; choose from {', '.join(ALL)}.", file=sys.stderr)
        return 2
    root = paths.home() / "domain_shift" / f"seed{args.seed}-limit{args.limit or 'all'}"
    start = time.perf_counter()
    lfw = [s for s in shifts if s != "att"]
    if lfw:
        build_lfw(lfw, root / "lfw", args.limit, args.seed)
        for s in lfw:
            (root / "lfw" / s / "pairs.txt").write_text((root / "lfw" / "pairs.txt").read_text())
    if "att" in shifts:
        build_att(root / "att", args.limit, args.seed)
    print(f"shifted copies ready in {time.perf_counter() - start:.0f} s under {root}", flush=True)
    seeds = [int(x) for x in (args.train_seeds or str(args.seed)).split(",") if x.strip()]
    results = {}
    for s in shifts:
        folder = root / "att" if s == "att" else root / "lfw" / s
        by_seed = {seed: run_shift(s, folder, args, seed) for seed in seeds}
        results[s] = by_seed[seeds[0]] if len(seeds) == 1 else {"seeds": by_seed, "mean": seed_summary(s, by_seed)}
        summary = {"args": vars(args), "results": results, "seconds": time.perf_counter() - start}
        if args.json:  # after every shift, so a long run can be read while it goes on
            Path(args.json).write_text(json.dumps(summary, indent=2))
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
