"""Clustering quality on lfw-dev: facetwin's choice against the baselines, on the same sface embeddings.

Every photo of ``../shared/data/lfw-dev/images`` (folders name the people) is embedded with its largest face (the
trunk-feature cache makes runs after the first take seconds). The people are split in two halves by a hash of their
name: the rule was chosen on the "choose" half and is reported on the "report" half (and on all photos). Each half
is clustered as a collection of its own. Every method gets the model's calibrated threshold as its scale:

- facetwin: average linkage on the k-NN graph (k 16; a pair without an edge counts as the larger of the two
  clusters' mean k-th-neighbour distance), merging while the linkage is below the distance where the model's
  calibrated P(same) is 0.97 (``merge_distance``);
- baselines: Chinese whispers (face_recognition's example, dlib) on every pair closer than the threshold t;
  DBSCAN (photo libraries), eps = t, min_samples 2; HDBSCAN (min_cluster_size 2, no scale);
- the same cut given to DBSCAN, and a grid of cuts (P(same) >= 0.9 ... 0.999) for average linkage, Chinese
  whispers and connected components (single linkage), to show which rule holds up when the cut is off.

Prints BCubed precision/recall/F1 and pairwise F1 per method and half, clusters, noise and seconds.

    python benchmarks/cluster_quality.py [--images ../shared/data/lfw-dev/images] [--backbone sface]
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import numpy as np

import facetwin
from facetwin.collection.cluster import (
    MERGE_PROBABILITY,
    average_linkage,
    chinese_whispers,
    components,
    merge_distance,
    relabel,
)
from facetwin.collection.cluster_graph import knn_graph
from facetwin.core.distances import to_query
from facetwin.evaluation.clustering import bcubed, pairwise
from facetwin.training.features import extract_features

IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw-dev" / "images"
SUFFIXES = {".jpg", ".jpeg", ".png"}


def embeddings(images: Path, backbone: str):
    """Embeddings, person labels and the model of every readable photo under ``images``."""
    files = sorted(str(p) for p in images.rglob("*") if p.suffix.lower() in SUFFIXES)
    model = facetwin.load(backbone)
    feats = extract_features(model.backbone, files)
    emb = model.embed_features(feats.features[feats.ok])
    people = np.array([Path(f).parent.name for f, ok in zip(files, feats.ok, strict=True) if ok])
    print(f"{len(files):,} photos, {len(np.unique(people)):,} people, {len(feats.failed)} unreadable, "
          f"{len(feats.no_face)} without a detected face (centre crop); trunk features {feats.seconds:.1f} s "
          f"({feats.cached} cached); model {backbone}: {model.distance} threshold {model.threshold:.4f}, "
          f"calibration P(same) = sigmoid({model.slope:.3f} d + {model.intercept:.3f})")
    return emb, people, model


def radius_edges(x: np.ndarray, distance: str, threshold: float):
    """Every pair closer than ``threshold`` (exact, FAISS range search): the graph dlib's example builds."""
    import faiss

    q = to_query(x, distance)
    if distance == "cosine":
        index = faiss.IndexFlatIP(q.shape[1])
        index.add(q)
        lims, _, rows = index.range_search(q, 1.0 - threshold)
    else:
        index = faiss.IndexFlatL2(q.shape[1])
        index.add(q)
        lims, _, rows = index.range_search(q, threshold**2)
    src = np.repeat(np.arange(len(x)), np.diff(lims).astype(np.int64))
    keep = src < rows
    return src[keep], rows[keep].astype(np.int64)


def methods(distance: str, t: float, slope: float, intercept: float) -> dict:
    """Name -> function(embeddings) -> labels (noise -1). ``t`` is the model threshold, ``cut(p)`` the distance
    where the model's calibrated P(same) is ``p``."""

    def cut(p):
        return merge_distance(t, slope, intercept, p)

    def avg(p):
        def run(x):
            graph = knn_graph(x, distance)
            i, j, d = graph.edges()
            return average_linkage(len(x), i, j, d, cut(p), radius=graph.radius())
        return run

    def cc(p):
        return lambda x: components(len(x), *radius_edges(x, distance, cut(p)))

    def cw(c):
        return lambda x: chinese_whispers(len(x), *radius_edges(x, distance, c))

    def dbscan(eps):
        def run(x):
            from sklearn.cluster import DBSCAN

            return DBSCAN(eps=eps, min_samples=2, metric=distance).fit_predict(x)
        return run

    def hdbscan(x):
        from sklearn.cluster import HDBSCAN

        return HDBSCAN(min_cluster_size=2, metric="euclidean").fit_predict(to_query(x, distance))

    def at(p):
        return f"P>={p} ({cut(p) / t:.2f} t)"

    grid = (0.9, 0.95, 0.97, 0.99, 0.999)
    chosen = MERGE_PROBABILITY
    return {
        f"facetwin: avg linkage k-NN, {at(chosen)}": avg(chosen),
        "baseline: Chinese whispers, pairs < t": cw(t),
        "baseline: DBSCAN eps=t, min_samples=2": dbscan(t),
        "HDBSCAN min_cluster_size=2": hdbscan,
        f"DBSCAN eps=cut {at(chosen)}": dbscan(cut(chosen)),
        **{f"avg linkage k-NN, {at(p)}": avg(p) for p in grid if p != chosen},
        **{f"Chinese whispers, pairs < cut {at(p)}": cw(cut(p)) for p in grid},
        **{f"conn. components, pairs < cut {at(p)}": cc(p) for p in grid},
    }


def halves(people: np.ndarray) -> dict:
    """Masks of the two person-disjoint halves (by SHA-256 of the name) and of everything."""
    bit = np.array([hashlib.sha256(p.encode()).digest()[0] & 1 for p in people], dtype=bool)
    return {"choose": ~bit, "report": bit, "all": np.ones(len(people), bool)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=IMAGES)
    parser.add_argument("--backbone", default="sface")
    parser.add_argument("--only", help="run only the methods whose name contains this text")
    parser.add_argument("--halves", default="choose,report,all", help="which halves to run (default all three)")
    args = parser.parse_args()
    x, people, model = embeddings(args.images, args.backbone)
    parts = halves(people)
    for name, mask in parts.items():
        print(f"half {name}: {mask.sum():,} photos, {len(np.unique(people[mask])):,} people")
    print(f"\n{'method':48} {'half':7} {'B3 P':>7} {'B3 R':>7} {'B3 F1':>7} {'pair F1':>8} {'clusters':>8} "
          f"{'noise':>6} {'s':>6}")
    for label, run in methods(model.distance, model.threshold, model.slope, model.intercept).items():
        if args.only and args.only not in label:
            continue
        for half, mask in parts.items():
            if half not in args.halves.split(","):
                continue
            start = time.perf_counter()
            pred = relabel(run(x[mask]))
            seconds = time.perf_counter() - start
            b, p = bcubed(pred, people[mask]), pairwise(pred, people[mask])
            print(f"{label:48} {half:7} {b['precision']:7.4f} {b['recall']:7.4f} {b['f1']:7.4f} {p['f1']:8.4f} "
                  f"{pred.max() + 1:8,} {int((pred < 0).sum()):6,} {seconds:6.2f}", flush=True)


if __name__ == "__main__":
    main()
