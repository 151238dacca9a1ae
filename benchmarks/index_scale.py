"""Indexes of 1 M and 10 M faces: opening, adding 1 %, find, cluster, memory; and photos/s on 1 and 2 Ray workers.

Synthetic faces (no photos): planted people as ``benchmarks/cluster_scale.py`` makes them (30 % seen once, the
rest in groups of 2-200, faces of one person about 0.4 apart, strangers about 1.0), in random order, committed
through facetwin's own index store with sface's model record, so every reader sees a real index. The first N faces
are built, then 1 % more are added. Each step runs in a process of its own (its peak memory is its own):

- ``build``: the shards of N faces, then the ANN (``find``'s FAISS index) and the rows ``find`` reads hits from;
- ``open``: opening the index (a new process, warm page cache) and "is this photo indexed?" for 1,000 paths;
- ``exact``: the exact 10 nearest faces of each query (every embedding, a shard at a time), in a process of its own;
- ``find``: p50/p99 of ``Finder.find_embedding`` (search, then the hits read from their rows) over queries that
  are new faces of indexed people, recall@10 against exact search (the ANN's 10 nearest; find's first 10, re-ranked
  by exact distance), person recall@10 (of the query
  person's indexed faces, up to 10, how many the 10 results hold), peak memory; ``--effort`` measures other
  search efforts (IVF lists probed, HNSW efSearch) in the same process;
- ``add``: 1 % more faces committed, then the first search (the ANN extended with them), against ``build``;
- ``cluster``: a fresh run on N faces, then an incremental run after the 1 % (``--no-fresh`` skips the fresh run
  where it would take hours), BCubed F1 of both against the planted people, and a fresh run on all faces;
- ``photos``: photos/s of ``facetwin index`` with 1 and then 2 Ray workers of 1 CPU each, twice, same run.

    python benchmarks/index_scale.py --faces 1000000 --work /tmp/scale-1m
    python benchmarks/index_scale.py --faces 10000000 --work /tmp/scale-10m --no-fresh
    python benchmarks/index_scale.py --photos ../shared/data/lfw-dev/images --photo-count 600 --work /tmp/photos

The machine's load average is printed with every figure: shared machines make single timings noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SHARD_PHOTOS = 10_000  # photos (one face each) per shard of the synthetic index
DIM = 128
CHUNK = 500_000  # faces made at a time
QUERY_START = 10**12  # noise of the query faces (no indexed face has this position): photos not in the index


# ---------------------------------------------------------------------------------------------------- the archive
def planted(n: int, seed: int = 0) -> tuple[np.ndarray, int]:
    """Person labels of ``n`` faces (30 % seen once, others in groups of 2-200), in random order, and how many
    people there are."""
    rng = np.random.default_rng(seed)
    once = int(0.3 * n)
    sizes = np.minimum(200, np.maximum(2, rng.zipf(1.8, size=n) + 1))
    sizes = sizes[: np.searchsorted(np.cumsum(sizes), n - once) + 1]
    sizes[-1] -= sizes.sum() - (n - once)
    sizes = np.concatenate([np.ones(once, np.int64), sizes[sizes > 0]])
    labels = np.repeat(np.arange(len(sizes)), sizes)
    return labels[rng.permutation(n)], len(sizes)


def faces_of(labels: np.ndarray, people: int, start: int, seed: int = 0, spread: float = 0.8) -> np.ndarray:
    """Unit embeddings of faces ``start``.. of the given people: the person's centre plus Gaussian noise (its own
    for each face position and seed, so a face is the same however the faces are cut into chunks)."""
    centres = np.random.default_rng([seed, 1]).standard_normal((people, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    # a stream of its own: numpy's seed sequences pad with zeros, so [seed, 0] would be the stream of seed itself
    noise = np.random.default_rng([seed, 2, start]).standard_normal((len(labels), DIM)).astype(np.float32)
    x = centres[labels] + noise * (spread / np.sqrt(DIM))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def commit_faces(index: Path, model, vectors: np.ndarray, first: int, shard_photos: int = SHARD_PHOTOS) -> None:
    """Commit one photo per face (``photos/NNNNNNNNN.jpg`` numbered from ``first``) through the index's store."""
    from facetwin.collection.records import Photo
    from facetwin.collection.shards import IndexStore

    store = IndexStore(index, model, write=True)
    try:
        if store.archive_root is None:
            store.archive_root = str(index.parent / "archive")
        box, marks = np.asarray([10, 10, 100, 100], np.float32), np.zeros(10, np.float32)
        for start in range(0, len(vectors), shard_photos):
            photos = []
            for k in range(start, min(start + shard_photos, len(vectors))):
                number = first + k
                info = {"path": f"photos/{number // 1000:06d}/{number:09d}.jpg",
                        "sha256": hashlib.sha256(str(number).encode()).hexdigest(), "size": 1000 + number,
                        "mtime_ns": number, "width": 640, "height": 480, "error": ""}
                face = {"face": 0, "box": box, "landmarks": marks, "score": 0.9, "embedding": vectors[k]}
                photos.append(Photo(info, [face]))
            store.commit(photos)
        store.manifest["photo_roots"] = ["."]
        store.write_manifest()
    finally:
        store.close()


def write_archive(index: Path, model, n: int, added: int, seed: int = 0, shard_photos: int = SHARD_PHOTOS) -> dict:
    """Plan ``n + added`` faces, commit the first ``n``; returns the plan (labels, people) for the later steps."""
    labels, people = planted(n + added, seed)
    np.save(index.parent / "labels.npy", labels)
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        commit_faces(index, model, faces_of(labels[start:stop], people, start, seed), start, shard_photos)
    return {"labels": labels, "people": people}


# ---------------------------------------------------------------------------------------------------- measuring
def load_average() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> None:
    """Peak memory counted from now on (Linux), e.g. without the benchmark's own query making."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def report(step: str, **figures) -> None:
    """One line of figures, with the load average (1, 5, 15 minutes) when they were taken."""
    shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items())
    print(f"[{step}] {shown}; load {load_average()}", flush=True)
    with open(os.environ["SCALE_LOG"], "a") as log:
        log.write(json.dumps({"step": step, "load": os.getloadavg(), **figures}) + "\n")


def sface():
    import facetwin

    return facetwin.load("sface")


# ---------------------------------------------------------------------------------------------------- steps
def step_build(work: Path, n: int, added: int) -> None:
    from facetwin.collection.ann import open_ann
    from facetwin.collection.face_rows import FaceRows
    from facetwin.collection.shards import IndexStore

    index = work / "index"
    model = sface()
    began = time.perf_counter()
    write_archive(index, model, n, added)
    shards = time.perf_counter() - began
    began = time.perf_counter()
    ann = open_ann(IndexStore(index), "cosine")
    build = time.perf_counter() - began
    began = time.perf_counter()
    FaceRows(IndexStore(index)).ensure()
    rows = time.perf_counter() - began
    report("build", faces=n, shard_seconds=shards, ann_seconds=build, rows_seconds=rows,
           total_seconds=shards + build + rows, ann=ann.name, peak_mb=peak_mb())


def step_open(work: Path) -> None:
    from facetwin.collection.shards import IndexStore

    began = time.perf_counter()
    store = IndexStore(work / "index")
    opened = time.perf_counter() - began
    wanted = [f"photos/{k // 1000:06d}/{k:09d}.jpg" for k in np.random.default_rng(1).choice(
        store.next_photo_id, 1000, replace=False)] + ["photos/new/never.jpg"]
    began = time.perf_counter()
    found = store.lookup(wanted)
    looked = time.perf_counter() - began
    began = time.perf_counter()
    one = store.lookup(wanted[:1])
    single = time.perf_counter() - began
    report("open", faces=store.faces_total(), shards=len(store.shards), open_seconds=opened,
           lookup_1000_seconds=looked, lookup_1_seconds=single, found=len(found) + len(one) - 1, peak_mb=peak_mb())


def _queries(labels: np.ndarray, count: int, faces: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` people among the first ``faces`` faces (as often as they have faces there), and a new face of
    each (a photo of them that is not indexed)."""
    people = np.random.default_rng(7).choice(labels[:faces], count, replace=False)
    return people, faces_of(people, int(labels.max()) + 1, QUERY_START)


def exact_top(snap, queries: np.ndarray, k: int) -> np.ndarray:
    """Face ids of the ``k`` nearest current faces of each query by exact search over every embedding (read from
    the finder's rows, a shard at a time)."""
    best_d = np.full((len(queries), k), np.inf, np.float32)
    best_i = np.full((len(queries), k), -1, np.int64)
    for shard in snap.store.shards:
        ids = np.arange(shard.first, shard.end)
        d = 1 - queries @ snap.rows.read(ids)["embedding"].T
        d[:, snap.store.retired_mask(ids)] = np.inf
        d, ids = np.concatenate([best_d, d], axis=1), np.concatenate([best_i, np.broadcast_to(ids, d.shape)], axis=1)
        order = np.argpartition(d, k - 1, axis=1)[:, :k]
        best_d, best_i = np.take_along_axis(d, order, axis=1), np.take_along_axis(ids, order, axis=1)
    return best_i


def set_effort(ann, effort: int | None) -> str:
    """Search effort of the ANN's base segment (IVF: lists probed; HNSW: efSearch; None: as shipped); returns it
    as text."""
    import faiss

    base = ann.segments[0]
    if base.kind == "ivfpq":
        ivf = faiss.extract_index_ivf(base.index)
        ivf.nprobe = effort or ivf.nprobe
        return f"nprobe {ivf.nprobe}"
    if base.kind == "hnsw":
        base.index.hnsw.efSearch = effort or base.index.hnsw.efSearch
        return f"efSearch {base.index.hnsw.efSearch}"
    return "exact"


def _truth_file(work: Path, faces: int) -> Path:
    return work / f"exact-{faces}.npy"


def step_exact(work: Path, count: int) -> None:
    """The exact 10 nearest faces of the queries, saved for ``find`` (a process of its own: reading every face
    would count in find's peak memory)."""
    from facetwin.collection.find import Finder

    finder = Finder(work / "index", sface())
    faces = finder.load()
    began = time.perf_counter()
    truth = exact_top(finder._current(), _queries(np.load(work / "labels.npy"), count, faces)[1], 10)
    np.save(_truth_file(work, faces), truth)
    report("exact", faces=faces, seconds=time.perf_counter() - began, peak_mb=peak_mb())


def step_find(work: Path, count: int, efforts: list[int | None]) -> None:
    """p50/p99 of find and of its ANN search alone, recall@10 against exact search of the ANN's 10 nearest and of
    find's first 10 results (re-ranked by exact distance), and person recall@10 (of the
    query person's indexed faces, up to 10, how many the 10 results hold; exact search's own figure beside it),
    for each search effort asked for."""
    from facetwin.collection.find import Finder

    began = time.perf_counter()
    finder = Finder(work / "index", sface())
    faces = finder.load()
    loaded = time.perf_counter() - began
    snap = finder._current()
    labels = np.load(work / "labels.npy")
    person, queries = _queries(labels, count, faces)
    labels = labels[:faces]
    indexed = np.minimum(10, np.bincount(labels, minlength=int(person.max()) + 1)[person])
    truth = np.load(_truth_file(work, faces))
    exact_person = float(np.sum(labels[truth] == person[:, None]) / indexed.sum())
    reset_peak()  # making the queries draws every person's centre (5 GB at 10 M): not find's memory
    for value in efforts:
        effort = set_effort(snap.ann, value)
        finder.find_embedding(queries[-1], 20)  # warm
        times, ann_times, hits, ann_ids, found_ids = [], [], 0, [], []
        for q in queries:
            began = time.perf_counter()
            ann_ids.append(snap.ann.search(q[None], 10)[0][0])
            ann_times.append(time.perf_counter() - began)
            began = time.perf_counter()
            found, _ = finder.find_embedding(q, 20)
            times.append(time.perf_counter() - began)
            hits += len(found)
            found_ids.append([h.face_id for h in found[:10]])
        ids = np.asarray(ann_ids)
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, truth, strict=True)])
        find_recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found_ids, truth, strict=True)])
        own = np.sum((labels[np.maximum(ids, 0)] == person[:, None]) & (ids >= 0)) / indexed.sum()
        report("find", faces=faces, ann=snap.ann.name, effort=effort, load_seconds=loaded,
               p50_ms=1000 * np.percentile(times, 50), p99_ms=1000 * np.percentile(times, 99),
               ann_p50_ms=1000 * np.percentile(ann_times, 50), ann_p99_ms=1000 * np.percentile(ann_times, 99),
               recall_at_10=float(recall), find_recall_at_10=float(find_recall), person_recall_at_10=float(own),
               exact_person_recall_at_10=exact_person,
               hits_per_query=hits / count, peak_mb=peak_mb())


def step_add(work: Path, n: int, added: int) -> None:
    from facetwin.collection.find import Finder

    labels = np.load(work / "labels.npy")
    people = int(labels.max()) + 1
    began = time.perf_counter()
    commit_faces(work / "index", sface(), faces_of(labels[n:], people, n), n)
    committed = time.perf_counter() - began
    began = time.perf_counter()
    finder = Finder(work / "index", sface())
    finder.find_embedding(faces_of(labels[:1], people, QUERY_START)[0], 20)
    searched = time.perf_counter() - began
    report("add", faces=added, commit_seconds=committed, first_find_seconds=searched,
           total_seconds=committed + searched, ann=finder._current().ann.name, peak_mb=peak_mb())


def step_cluster(work: Path, mode: str) -> None:
    from facetwin.collection import cluster_store, people
    from facetwin.evaluation.clustering import bcubed

    began, cpu = time.perf_counter(), time.process_time()
    result = people.cluster_index(work / "index", fresh=mode == "fresh")
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    table = cluster_store.load(work / "index")
    truth = np.load(work / "labels.npy")[table.face_ids]
    score = bcubed(table.clusters, truth)
    report(f"cluster-{mode}", faces=len(table.face_ids), mode=result["mode"], seconds=seconds, cpu_seconds=cpu,
           new_faces=result["new_faces"], bcubed_f1=score["f1"], clusters=result["clusters"],
           noise=result["noise"], peak_mb=peak_mb())


def step_photos(work: Path, folder: Path, count: int) -> None:
    """photos/s of 1 and 2 Ray workers (1 CPU each) on the same photos, alternating, twice."""
    import facetwin
    from facetwin.collection.scan import scan

    chosen = [c.path for c in scan([folder])][:count]
    listing = work / "photos.txt"
    listing.write_text("\n".join(chosen) + "\n")
    for round_ in (1, 2):
        for workers in (1, 2):
            out = work / f"photos-{workers}-{round_}"
            shutil.rmtree(out, ignore_errors=True)
            summary = facetwin.index([listing], out, workers=workers, progress=False, shard_photos=50)
            steady = summary.details.get("steady_photos_per_second") or summary.photos_per_second
            report("photos", workers=workers, round=round_, photos=summary.added_photos,
                   photos_per_second=summary.photos_per_second, steady_photos_per_second=steady,
                   per_core=steady / workers, startup_seconds=summary.details.get("first_photo_seconds", 0.0))


# ---------------------------------------------------------------------------------------------------- driver
def _spawn(args: list[str], work: Path) -> None:
    env = {**os.environ, "SCALE_LOG": str(work / "figures.jsonl")}
    done = subprocess.run([sys.executable, __file__, *args, "--work", str(work)], env=env)
    if done.returncode:
        raise SystemExit(f"step {args[:2]} failed ({done.returncode})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, help="faces in the index before 1 % more are added")
    parser.add_argument("--work", type=Path, required=True, help="a folder for the index (removed first)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--no-fresh", action="store_true", help="skip the fresh clustering runs")
    parser.add_argument("--photos", type=Path, help="a folder of real photos: the photos/s row")
    parser.add_argument("--photo-count", type=int, default=600)
    parser.add_argument("--effort", default="", help="find's search efforts to measure, e.g. 32,128 (IVF lists "
                        "probed or HNSW efSearch; default: as shipped)")
    parser.add_argument("--step", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.step:
        n = args.faces or 0
        added = n // 100
        efforts = [int(v) for v in args.effort.split(",") if v] or [None]
        {"build": lambda: step_build(args.work, n, added), "open": lambda: step_open(args.work),
         "exact": lambda: step_exact(args.work, args.queries),
         "find": lambda: step_find(args.work, args.queries, efforts), "add": lambda: step_add(args.work, n, added),
         "cluster-fresh": lambda: step_cluster(args.work, "fresh"),
         "cluster-incremental": lambda: step_cluster(args.work, "incremental"),
         "photos": lambda: step_photos(args.work, args.photos, args.photo_count)}[args.step]()
        return
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    print(f"{os.cpu_count()} cores, load {load_average()}, results in {args.work / 'figures.jsonl'}", flush=True)
    if args.photos:
        _spawn(["--step", "photos", "--photos", str(args.photos), "--photo-count", str(args.photo_count)], args.work)
    if not args.faces:
        return
    size = ["--faces", str(args.faces)]
    steps = ["build", "open", "exact", "find"] + ([] if args.no_fresh else ["cluster-fresh"])
    steps += ["add", "open", "exact", "find"] + ([] if args.no_fresh else ["cluster-incremental", "cluster-fresh"])
    for step in steps:
        _spawn(["--step", step, *size, "--queries", str(args.queries), "--effort", args.effort], args.work)


if __name__ == "__main__":
    main()
