"""Rank-1 identification on lfw-dev: people with at least two photos; the gallery holds each person's
first photo, every other photo is a probe.

    python benchmarks/identify_lfw.py [--images ../shared/data/lfw-dev/images] [--backbone sface | --model RUN_DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from facetwin.gallery import Gallery
from facetwin.loading import load

DEFAULT_IMAGES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "lfw-dev" / "images"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--backbone", default="sface")
    parser.add_argument("--model", help="a trained run directory instead of a plain backbone")
    args = parser.parse_args()
    model = load(args.model or args.backbone)
    people = {d.name: sorted(d.glob("*.jpg")) for d in sorted(args.images.iterdir()) if d.is_dir()}
    people = {name: files for name, files in people.items() if len(files) >= 2}
    files = [f for group in people.values() for f in group]
    owners = [name for name, group in people.items() for _ in group]
    start = time.perf_counter()
    batch = model.embed_many(files, no_face="center", progress=True)
    embed_s = time.perf_counter() - start
    first = {}
    for i, name in enumerate(owners):
        first.setdefault(name, i)
    with tempfile.TemporaryDirectory() as tmp:
        gallery = Gallery(Path(tmp) / "lfw.db", model)
        gallery.enroll_many({name: batch.embeddings[i][None] for name, i in first.items()})
        probes = [i for i in range(len(files)) if first[owners[i]] != i]
        start = time.perf_counter()
        results = [gallery.search(batch.embeddings[i]) for i in probes]
        search_s = time.perf_counter() - start
    rank1 = np.mean([r.matches[0].person == owners[i] for r, i in zip(results, probes, strict=True)])
    open_set = np.mean([r.person == owners[i] for r, i in zip(results, probes, strict=True)])
    print(f"{len(people)} people, gallery {len(first)} photos, {len(probes)} probes; "
          f"no face found in {len(batch.no_face)} (centre crop used)")
    print(f"rank-1 identification: {rank1 * 100:.2f} %")
    print(f"open set (correct person and within the threshold {model.threshold:.4f}): {open_set * 100:.2f} %")
    per_search = search_s * 1000 / len(probes)
    print(f"embedding {len(files)} photos: {embed_s:.1f} s; {len(probes)} searches: {per_search:.2f} ms each")


if __name__ == "__main__":
    main()
