"""Gallery speed at scale: N random 128-d unit vectors as people (default 1,000,000).

Prints enrollment throughput, identify latency p50/p99 (exact and HNSW) and recall@1 of the HNSW
index against exact search on 1,000 probes (noisy copies of enrolled vectors).

    python benchmarks/gallery_speed.py [--n 1000000] [--probes 1000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from facetwin.gallery import Gallery


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--probes", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=1000, help="people per enrollment transaction")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((args.n, 128)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with tempfile.TemporaryDirectory() as tmp:
        gallery = Gallery(Path(tmp) / "big.db", "sface")
        start = time.perf_counter()
        for lo in range(0, args.n, args.batch):
            gallery.enroll_many({f"p{i}": vectors[i : i + 1] for i in range(lo, min(lo + args.batch, args.n))})
        enroll_s = time.perf_counter() - start
        print(f"enrolled {args.n:,} people in {enroll_s:.1f} s: {args.n / enroll_s:,.0f} people/s")

        start = time.perf_counter()
        gallery.search(vectors[0])  # loads the vectors and builds (or loads) the HNSW index
        print(f"first search (load {args.n:,} vectors + build HNSW index): {time.perf_counter() - start:.1f} s")
        exact = Gallery(Path(tmp) / "big.db", "sface", index_threshold=args.n + 1)
        exact.search(vectors[0])

        picks = rng.choice(args.n, size=args.probes, replace=False)
        probes = vectors[picks] + rng.normal(scale=0.35 / np.sqrt(128), size=(args.probes, 128)).astype(np.float32)
        timings = {"faiss-hnsw": [], "exact": []}
        agree = 0
        for probe in probes:
            t = time.perf_counter()
            approx = gallery.search(probe)
            timings["faiss-hnsw"].append(time.perf_counter() - t)
            t = time.perf_counter()
            truth = exact.search(probe)
            timings["exact"].append(time.perf_counter() - t)
            assert approx.method == "faiss-hnsw" and truth.method == "exact"
            agree += approx.matches[0].person == truth.matches[0].person
        for method, values in timings.items():
            ms = np.array(values) * 1000
            print(f"{method:>10}: p50 {np.percentile(ms, 50):.2f} ms, p99 {np.percentile(ms, 99):.2f} ms per query")
        print(f"recall@1 of faiss-hnsw against exact search: {agree / args.probes:.4f} ({args.probes} probes)")


if __name__ == "__main__":
    main()
