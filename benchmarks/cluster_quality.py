"""Clustering quality on lfw-dev: facetwin's choice against the baselines, on the same sface embeddings.

Every photo of ``../shared/data/lfw-dev/images`` (folders name the people) is embedded with its largest face (the
trunk-feature cache makes runs after the first take seconds). The people are split in two halves by a hash of their
name: the rule was chosen on the "choose" half and is reported on the "report" half (and on all photos). Each half
is clustered as a collection of its own. Every method gets the model's calibrated threshold as its scale:

- facetwin: average linkage on the k-NN graph (k 16), merging while the mean edge distance < threshold;
- Chinese whispers (face_recognition's example, dlib): edges of every pair closer than the threshold;
- DBSCAN (photo libraries): eps = threshold, min_samples 2, cosine;
- candidates that lost: connected components at the threshold (single linkage), Chinese whispers on the k-NN graph,
  HDBSCAN (min_cluster_size 2), average linkage at 0.9 and 1.1 × the threshold.

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
from facetwin.collection.cluster import average_linkage, chinese_whispers, components, relabel
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
          f"({feats.cached} cached); model {backbone}: {model.distance} threshold {model.threshold:.4f}")
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
    src = np.repeat(np.arange(len(x)), np.diff(lims))
    keep = src < rows
    return src[keep], rows[keep].astype(np.int64)


def methods(distance: str, t: float) -> dict:
    """Name -> function(embeddings) -> labels (noise -1)."""

    def avg(scale):
        def run(x):
            i, j, d = knn_graph(x, distance).edges()
            return average_linkage(len(x), i, j, d, scale * t)
        return run

    def dbscan(x):
        from sklearn.cluster import DBSCAN

        return DBSCAN(eps=t, min_samples=2, metric=distance).fit_predict(x)

    def hdbscan(x):
        from sklearn.cluster import HDBSCAN

        return HDBSCAN(min_cluster_size=2, metric="euclidean").fit_predict(to_query(x, distance))

    return {
        "facetwin: average linkage, k-NN graph": avg(1.0),
        "baseline: Chinese whispers, all pairs < t": lambda x: chinese_whispers(len(x), *radius_edges(x, distance, t)),
        "baseline: DBSCAN eps=t, min_samples=2": dbscan,
        "connected components, edges < t": lambda x: components(len(x), *radius_edges(x, distance, t)),
        "Chinese whispers, k-NN graph edges < t": lambda x: chinese_whispers(
            len(x), *knn_graph(x, distance).edges(cutoff=t)[:2]),
        "HDBSCAN min_cluster_size=2": hdbscan,
        "average linkage, k-NN graph, 0.9 t": avg(0.9),
        "average linkage, k-NN graph, 1.1 t": avg(1.1),
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
    args = parser.parse_args()
    x, people, model = embeddings(args.images, args.backbone)
    parts = halves(people)
    for name, mask in parts.items():
        print(f"half {name}: {mask.sum():,} photos, {len(np.unique(people[mask])):,} people")
    print(f"\n{'method':44} {'half':7} {'B3 P':>7} {'B3 R':>7} {'B3 F1':>7} {'pair F1':>8} {'clusters':>8} "
          f"{'noise':>6} {'s':>6}")
    for label, run in methods(model.distance, model.threshold).items():
        if args.only and args.only not in label:
            continue
        for half, mask in parts.items():
            start = time.perf_counter()
            pred = relabel(run(x[mask]))
            seconds = time.perf_counter() - start
            b, p = bcubed(pred, people[mask]), pairwise(pred, people[mask])
            print(f"{label:44} {half:7} {b['precision']:7.4f} {b['recall']:7.4f} {b['f1']:7.4f} {p['f1']:8.4f} "
                  f"{pred.max() + 1:8,} {int((pred < 0).sum()):6,} {seconds:6.2f}", flush=True)


if __name__ == "__main__":
    main()
