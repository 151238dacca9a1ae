"""Collection indexing speed, in-process and on Ray, and ``find`` latency on a large index.

Prints photos/s in-process (one process) and on a local Ray with 1 and 2 workers, the scaling from 1 to 2
workers, Ray's start-up cost, peak memory (resident set) of the driver and of each Ray worker, then ``find``
latency (p50/p95) on an index of ``--find-faces`` synthetic faces (random 128-d unit vectors; each query a noisy
copy of an indexed face), the time to build the ANN index and to extend it by one shard.

    python benchmarks/index_speed.py [--images ../shared/data/lfw-dev/images] [--limit N] [--skip-ray]
                                     [--find-faces 1000000] [--skip-find]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

import facetwin
from facetwin.collection.scan import scan

DEFAULT_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw-dev" / "images"


class WorkerMemory:
    """Peak resident memory (VmHWM) of this process's Ray worker descendants, sampled while a run goes."""

    def __init__(self):
        self.peaks: dict[int, tuple[str, int]] = {}
        self.cpu: dict[int, float] = {}  # CPU seconds (user + system) last seen per worker
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set():
            for pid in _descendants(os.getpid()):
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    status = Path(f"/proc/{pid}/status").read_text()
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if "ray::MapWorker" not in cmd:
                    continue
                self.cpu[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
                hwm = next((int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("VmHWM:")), 0)
                name = cmd.split()[0]
                self.peaks[pid] = (name, max(hwm, self.peaks.get(pid, ("", 0))[1]))
            self._stop.wait(0.5)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _descendants(root: int) -> list[int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = [], {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier}
        found += frontier
    return found


def run_index(paths: list[str], work: Path, label: str, **options) -> tuple[float, float]:
    listing = work / f"{label}.txt"
    listing.write_text("\n".join(paths) + "\n")
    out = work / f"{label}-index"
    began, cpu0 = time.perf_counter(), _own_cpu()
    with WorkerMemory() as memory:
        summary = facetwin.index([listing], out, progress=False, **options)
    wall, cpu = time.perf_counter() - began, _own_cpu() - cpu0
    d = summary.details
    print(
        f"{label}: {summary.counts['photos']} photos, {summary.counts['faces']} faces in {summary.seconds:.1f} s "
        f"= {summary.photos_per_second:.2f} photos/s (engine {summary.engine}, workers {d.get('workers')}; "
        f"wall {wall:.1f} s with model load / Ray start)"
    )
    if "steady_photos_per_second" in d:
        print(f"  after the first photo: {d['steady_photos_per_second']:.2f} photos/s; "
              f"first photo complete after {d['first_photo_seconds']:.1f} s (start-up)")
    if "ray_startup_seconds" in d:
        print(f"  Ray start-up (ray.init alone): {d['ray_startup_seconds']:.2f} s")
    for pid, (name, kb) in sorted(memory.peaks.items()):
        print(f"  peak memory of Ray worker {pid} {name}: {kb / 1024:.0f} MiB; CPU {memory.cpu.get(pid, 0):.1f} s")
    workers_cpu = sum(memory.cpu.values())
    photos, total = summary.counts["photos"], cpu + workers_cpu
    print(f"  CPU time: driver {cpu:.1f} s + workers {workers_cpu:.1f} s = {total / photos * 1000:.0f} ms "
          f"per photo ({photos / (cpu + workers_cpu):.2f} photos per CPU-second; load-independent capacity)")
    return summary.photos_per_second, d.get("steady_photos_per_second") or summary.photos_per_second


def bench_index(args) -> None:
    images = Path(args.images)
    paths = [c.path for c in scan([images])][: args.limit or None]
    print(f"photos: {len(paths)} from {images}; CPUs: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f} "
          "(shared with other work: timings are noisy)")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        local = run_index(paths, work, "in-process", engine="local")
        print(f"  peak memory of the in-process run (this process): "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
        if args.skip_ray:
            return
        one = run_index(paths, work, "ray-1-worker", engine="ray", workers=1)
        two = run_index(paths, work, "ray-2-workers", engine="ray", workers=2)
        for i, what in enumerate(("whole run", "after start-up")):
            gain = two[i] / one[i]
            print(f"scaling 1 -> 2 Ray workers ({what}): {gain:.2f}x (efficiency {gain / 2:.0%}); "
                  f"Ray 2 workers vs in-process: {two[i] / local[i]:.2f}x")


def bench_find(args) -> None:
    from facetwin.collection.find import Finder
    from facetwin.collection.records import Photo
    from facetwin.collection.shards import IndexStore
    from facetwin.loading import load

    model = load("sface")
    rng = np.random.default_rng(0)
    n, dim, per_shard = args.find_faces, 128, 50_000
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "index"
        store = IndexStore(root, model, write=True)
        began = time.perf_counter()
        kept, extra = [], []
        for start in [*range(0, n, per_shard), n]:
            count = min(per_shard, n - start) if start < n else 1000
            vectors = rng.standard_normal((count, dim)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            if start < n:
                kept.append(vectors[: -(-args.queries // -(-n // per_shard))])
            photos = [
                Photo({"path": f"/synthetic/{start + i:08d}.jpg", "sha256": f"{start + i:064x}", "size": 1,
                       "mtime_ns": 0, "width": 640, "height": 480, "faces": 1, "face_id": -1, "error": ""},
                      [{"face": 0, "box": np.array([1, 2, 3, 4], np.float32), "landmarks": np.zeros(10, np.float32),
                        "score": 0.9, "embedding": v}])
                for i, v in enumerate(vectors)
            ]
            if start >= n:
                extra = photos
                break
            store.commit(photos)
        store.write_manifest()
        print(f"find: wrote {n:,} synthetic faces in {time.perf_counter() - began:.1f} s")
        finder = Finder(root, model)
        began = time.perf_counter()
        finder.load()
        print(f"find: loaded the index and built the HNSW graph in {time.perf_counter() - began:.1f} s")
        targets = np.concatenate(kept)[: args.queries]
        noise = rng.standard_normal(targets.shape).astype(np.float32)
        queries = targets + 0.35 * noise / np.linalg.norm(noise, axis=1, keepdims=True)
        ms, found = [], 0
        for q, t in zip(queries, targets, strict=True):
            start = time.perf_counter()
            hits, _ = finder.find_embedding(q, top_k=20)
            ms.append(1000 * (time.perf_counter() - start))
            found += bool(hits) and abs(hits[0].distance - (1 - float(q @ t) / np.linalg.norm(q))) < 1e-4
        ms = np.array(ms)
        print(f"find on {n:,} faces: p50 {np.percentile(ms, 50):.2f} ms, p95 {np.percentile(ms, 95):.2f} ms "
              f"({len(ms)} queries, top-20 photos; the planted face came first in {found}/{len(ms)})")
        store.commit(extra)
        store.write_manifest()
        began = time.perf_counter()
        finder.find_embedding(queries[0])
        print(f"find: first search after one more shard of {len(extra)} faces (ANN index extended, not rebuilt): "
              f"{time.perf_counter() - began:.1f} s")
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", default=str(DEFAULT_IMAGES), help="folder of photos (default lfw-dev)")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N photos (0: all)")
    parser.add_argument("--skip-ray", action="store_true", help="in-process only")
    parser.add_argument("--skip-index", action="store_true", help="find latency only")
    parser.add_argument("--skip-find", action="store_true", help="indexing speed only")
    parser.add_argument("--find-faces", type=int, default=1_000_000, help="synthetic faces for find latency")
    parser.add_argument("--queries", type=int, default=200, help="find queries timed")
    args = parser.parse_args()
    if not args.skip_index:
        bench_index(args)
    if not args.skip_find:
        bench_find(args)


if __name__ == "__main__":
    main()
