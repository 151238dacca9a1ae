"""Clustering at scale: time and peak memory of ``facetwin.collection.cluster`` on synthetic planted people.

N unit 128-d embeddings: 30 % of the faces are people seen once, the rest belong to people with 2 to 200 photos
(a Zipf-like spread of sizes); each face is its person's centre plus Gaussian noise, scaled so that faces of one
person sit at about 0.4 (sface's merge distance is 0.50, its threshold 0.66) and strangers at about 1.0. Prints the
k-NN graph time, the clustering time, the peak resident memory while clustering (whole process, embeddings
included; the peak of making the data is reset first) and the
BCubed/pairwise F1 against the planted people. Each size runs in its own process so peaks do not mix.

    python benchmarks/cluster_scale.py --n 100000 1000000
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time

import numpy as np


def planted(n: int, seed: int = 0, dim: int = 128, spread: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """``n`` embeddings and their planted person labels."""
    rng = np.random.default_rng(seed)
    sizes = []
    once = int(0.3 * n)
    left = n - once
    while left > 0:
        size = int(min(left, max(2, min(200, rng.zipf(1.8) + 1))))
        sizes.append(size)
        left -= size
    sizes = np.array([1] * once + sizes)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    centres = rng.standard_normal((len(sizes), dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = np.empty((n, dim), dtype=np.float32)
    for lo in range(0, n, 100_000):
        lab = labels[lo : lo + 100_000]
        x[lo : lo + len(lab)] = centres[lab] + rng.standard_normal((len(lab), dim)).astype(np.float32) * (
            spread / np.sqrt(dim)
        )
    del centres
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, labels


def _status_mb(key: str) -> float:
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> float:
    """Forget the peak so far (Linux: clear_refs 5 resets VmHWM); returns the resident memory now, in MB."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    return _status_mb("VmRSS:")


def _peak() -> float:
    return _status_mb("VmHWM:")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def one(n: int, cut: float) -> None:
    from facetwin.collection.cluster import average_linkage, relabel
    from facetwin.collection.cluster_graph import knn_graph
    from facetwin.evaluation.clustering import bcubed, pairwise

    x, truth = planted(n)
    cpu0 = _cpu()
    base_mb = _reset_peak()
    start = time.perf_counter()
    graph = knn_graph(x, "cosine")
    graph_s = time.perf_counter() - start
    start = time.perf_counter()
    i, j, d = graph.edges()
    labels = relabel(average_linkage(n, i, j, d, cut))
    cluster_s = time.perf_counter() - start
    peak_mb = _peak()
    cpu = _cpu() - cpu0
    b, p = bcubed(labels, truth), pairwise(labels, truth)
    print(
        f"{n:>9,} faces ({len(np.unique(truth)):,} planted people): k-NN graph {graph_s:.1f} s, clustering "
        f"{cluster_s:.1f} s, total {graph_s + cluster_s:.1f} s wall, {cpu:.1f} s CPU (all threads); "
        f"peak RSS while clustering {peak_mb:,.0f} MB (resident before: embeddings and "
        f"labels, {base_mb:,.0f} MB); {labels.max() + 1:,} clusters, {np.mean(labels < 0):.1%} noise; "
        f"BCubed F1 {b['f1']:.4f}, pairwise F1 {p['f1']:.4f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--cut", type=float, default=None, help="merge distance (default: sface's, merge_distance)")
    parser.add_argument("--nprobe", type=int, default=None, help="IVF lists searched per face above 200 k faces")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    cut = args.cut
    if cut is None:
        import facetwin
        from facetwin.collection.cluster import merge_distance

        model = facetwin.load("sface")
        cut = merge_distance(model.threshold, model.slope, model.intercept)
        print(f"sface threshold {model.threshold:.4f} (cosine); merge distance {cut:.4f}")
    if args.child:
        if args.nprobe:
            from facetwin.collection import cluster_graph

            cluster_graph.NPROBE = args.nprobe
        one(args.n[0], cut)
        return
    for n in args.n:
        cmd = [sys.executable, __file__, "--child", "--n", str(n), "--cut", str(cut)]
        cmd += ["--nprobe", str(args.nprobe)] if args.nprobe else []
        subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
