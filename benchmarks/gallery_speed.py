"""Gallery speed at scale: N random 128-d unit vectors as people (default 1,000,000).

Prints enrollment throughput, identify latency p50/p99 (exact and HNSW) and recall@1 of the HNSW
index against exact search on 1,000 probes (noisy copies of enrolled vectors, noise of norm 0.35),
then the same recall and latency for other HNSW search depths (``--ef-search``), and the time of the
first search after enrolling one more person (the saved index is extended).

    python benchmarks/gallery_speed.py [--n 1000000] [--probes 1000] [--ef-search 128,192,256,384]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from facetwin.gallery import Gallery


def timed_answers(gallery: Gallery, probes: np.ndarray) -> tuple[list[str], np.ndarray, str]:
    """Best person per probe, milliseconds per query, and the search method that answered."""
    people, ms, methods = [], [], set()
    for probe in probes:
        start = time.perf_counter()
        result = gallery.search(probe)
        ms.append(1000 * (time.perf_counter() - start))
        people.append(result.matches[0].person)
        methods.add(result.method)
    assert len(methods) == 1, methods
    return people, np.array(ms), methods.pop()


def recall_at_1(answers: list[str], truth: list[str]) -> float:
    return float(np.mean(np.array(answers) == np.array(truth)))


def report(label: str, ms: np.ndarray) -> str:
    return f"{label:>24}: p50 {np.percentile(ms, 50):.2f} ms, p99 {np.percentile(ms, 99):.2f} ms per query"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--probes", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=1000, help="people per enrollment transaction")
    parser.add_argument("--ef-search", default="128,192,256,384", help="HNSW search depths to compare")
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
        truth, exact_ms, method = timed_answers(exact, probes)
        assert method == "exact"
        approx, approx_ms, method = timed_answers(gallery, probes)
        index = gallery.ann_index()
        print(report("exact", exact_ms))
        print(report(f"{method} (efSearch {index.ef_search})", approx_ms))
        recall = recall_at_1(approx, truth)
        print(f"recall@1 of {method} against exact search: {recall:.4f} ({args.probes} probes)")

        default = index.ef_search
        for ef in (int(v) for v in args.ef_search.split(",") if v):
            index.ef_search = ef
            answers, ms, _ = timed_answers(gallery, probes)
            recall = recall_at_1(answers, truth)
            print(f"{report(f'efSearch {ef}', ms)}, recall@1 {recall:.4f}")
        index.ef_search = default

        start = time.perf_counter()
        gallery.enroll_many({"newcomer": probes[:1]})
        found = gallery.search(probes[0]).matches[0].person
        seconds = time.perf_counter() - start
        print(f"enroll one more person, then search (index extended, not rebuilt): {seconds:.1f} s, found {found}")


if __name__ == "__main__":
    main()
