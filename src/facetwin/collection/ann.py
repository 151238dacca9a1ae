"""Approximate nearest neighbours over an index's faces, kept in ``INDEX_DIR/ann/`` and extended shard by shard.

The faces are searched in segments, each holding every face (retired ones too) of consecutive shards, so a row
maps to a face id by adding the segment's first; retired faces are left out of the results.

- The base segment: exact (FAISS flat) up to ``FLAT_MAX`` faces, a FAISS HNSW graph (flat vectors: exact
  distances) up to ``HNSW_MAX``, and above, where an HNSW graph no longer fits a memory budget and takes hours to
  build, an inverted file of 4-bit product-quantised codes scanned with SIMD (FAISS IVF-PQ fast-scan: about √N lists
  trained on a sample, one in ``PROBED_SHARE`` searched) whose nearest ``RERANKED`` are re-ranked by 8-bit
  scalar-quantised copies of the faces (FAISS IndexRefine; chosen against IVF-SQ8 by ``benchmarks/index_scale.py``).
- Delta segments: the faces of shards added since, as exact flat indexes, searched beside the base. Adding shards
  makes a new delta of their faces only; once the deltas hold more than ``DELTA_MAX`` faces they are folded into the
  base (added to it; rebuilt when the base outgrows its kind).

A change writes its new segment files, then ``ann/state.json`` (the commit point, atomically), then removes the
files the state no longer names: a reader sees the old segments or the new ones, and a run killed meanwhile
leaves the old state. Writers take ``ann/.lock``. The ANN is a cache: a segment file is used as it is only if this
user's facetwin wrote or checked that very version of it (:mod:`facetwin.collection.verified`); any other (an index
copied or moved to another machine, a damaged or crafted file) is checked against the shards (a flat or HNSW
segment: every vector, and the graph walkable) or rebuilt from them (IVF-PQ), so it is never searched unchecked.
An index saved by an earlier facetwin with an IVF-SQ8 base has its ANN rebuilt once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from facetwin.collection.index_check import matrix
from facetwin.collection.verified import identity
from facetwin.core import paths
from facetwin.core.distances import from_search_scores, to_query
from facetwin.errors import FacetwinError
from facetwin.gallery.index import EF_CONSTRUCTION, M, stored_vectors, walkable

FOLDER = "ann"
STATE = "state.json"
FORMAT = "facetwin-ann/1"
FLAT_MAX = 20_000  # exact search of 20 k faces costs about a third of a millisecond
HNSW_MAX = 1_000_000  # HNSW up to here (1 M faces: built in 670 s, recall@10 0.78; docs/benchmarks.md), IVF-PQ above
DELTA_MAX = 100_000  # faces searched exactly beside the base before they are folded into it
EF_SEARCH = 512  # HNSW: 300 k faces, recall@10 0.92 at find p50 3.2 ms (256: 0.85 at 1.7 ms)
PROBED_SHARE = 2  # IVF-PQ: one list in 2 (10 M faces: find p50 16 ms, recall@10 0.957; 1 in 4: 10 ms, 0.899)
RERANKED = 300  # IVF-PQ: this many nearest by the 4-bit codes are re-ranked by their 8-bit copies
QUERY_BLOCK = 16  # IVF-PQ: queries searched together (each holds a lookup table per list probed: 8 MB at 10 M)
TRAIN_PER_LIST = 64  # training sample of the IVF quantiser: this many faces per list
MARGIN = {"flat": 0.0, "hnsw": 0.0, "ivfpq": 0.05}  # how far off a kind's distances may be (IVF-PQ: 8-bit copies)


@dataclass
class Segment:
    """Faces of shards ``shards[0]``..``shards[1]`` (numbers), face ids ``first``..``first + count - 1``."""

    file: str
    kind: str
    shards: list[int]
    first: int
    count: int
    index: object = field(default=None, repr=False)

    def record(self) -> dict:
        return {"file": self.file, "kind": self.kind, "shards": self.shards, "first": self.first, "count": self.count}


def kind_for(count: int) -> str:
    """The base segment's kind for ``count`` faces."""
    return "flat" if count <= FLAT_MAX else "hnsw" if count <= HNSW_MAX else "ivfpq"


class Ann:
    """The segments of one index, loaded, covering its first ``covered`` shards."""

    def __init__(self, segments: list[Segment], distance: str, dim: int, retired: Callable[[np.ndarray], np.ndarray],
                 covered: int):
        self.segments = segments
        self.distance = distance
        self.dim = dim
        self.retired = retired
        self.covered = covered

    @property
    def count(self) -> int:
        return sum(s.count for s in self.segments)

    @property
    def name(self) -> str:
        kinds = [s.kind for s in self.segments]
        return "faiss-" + "+".join([kinds[0], *(["flat"] if len(kinds) > 1 else [])]) if kinds else "empty"

    @property
    def margin(self) -> float:
        """How far the distances returned may be from the exact ones."""
        return max((MARGIN[s.kind] for s in self.segments), default=0.0)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest current faces of each query (prepared): face ids and distances, nearest first (-1 and
        infinity where there are fewer)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        ids = [np.full((len(queries), k), -1, np.int64)]  # k columns whatever the segments hold
        dists = [np.full((len(queries), k), np.inf, np.float32)]
        for segment in self.segments:
            if segment.count == 0:
                continue
            scores, rows = _searched(segment, queries, min(k, segment.count))
            found = rows >= 0
            ids.append(np.where(found, rows + segment.first, -1))
            dists.append(np.where(found, from_search_scores(scores, self.distance), np.inf).astype(np.float32))
        ids, dists = np.concatenate(ids, axis=1), np.concatenate(dists, axis=1)
        gone = ids >= 0
        gone[gone] = self.retired(ids[gone])
        dists[gone | (ids < 0)] = np.inf
        order = np.argsort(dists, axis=1, kind="stable")[:, :k]
        ids, dists = np.take_along_axis(ids, order, axis=1), np.take_along_axis(dists, order, axis=1)
        ids[~np.isfinite(dists)] = -1
        return ids, dists


def open_ann(store, distance: str) -> Ann:
    """The ANN of the index ``store`` (an :class:`facetwin.collection.shards.IndexStore`) covering every shard it
    has: the saved segments it can trust, extended with the shards added since (and saved, when the folder can be
    written)."""
    folder = store.root / FOLDER
    dim = int(store.model_info["embedding_dim"])
    segments, covered = _saved(store, folder, distance, dim)
    if covered < len(store.shards):
        try:
            lock = _writer(folder)
        except (OSError, FacetwinError):
            lock = contextlib.nullcontext(False)  # a folder that cannot be written: extended in memory only
        with lock as saving:
            if saving:  # another process may have extended it while this one waited
                segments, covered = _saved(store, folder, distance, dim)
            if covered < len(store.shards):
                segments = _extended(store, folder, distance, segments, covered, saving)
    return Ann(segments, distance, dim, store.retired_mask, len(store.shards))


def _searched(segment: Segment, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """FAISS's scores and rows of the ``k`` nearest in ``segment``. An IVF-PQ segment is searched ``QUERY_BLOCK``
    queries at a time, with its lists probed and ``RERANKED`` candidates (at least ``k``) re-ranked."""
    if segment.kind != "ivfpq" or not len(queries):
        return segment.index.search(queries, k)
    probed = faiss.SearchParametersIVF(nprobe=faiss.extract_index_ivf(segment.index).nprobe)
    params = faiss.IndexRefineSearchParameters(k_factor=max(1.0, RERANKED / k), base_index_params=probed)
    parts = [segment.index.search(queries[s : s + QUERY_BLOCK], k, params=params)
             for s in range(0, len(queries), QUERY_BLOCK)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _saved(store, folder: Path, distance: str, dim: int) -> tuple[list[Segment], int]:
    """The saved segments that cover the store's first shards in order and were written by this user's facetwin
    (that very version of each file), loaded; and how many shards they cover."""
    state = _state(folder)
    if state is None or state.get("distance") != distance or state.get("dim") != dim or \
            state.get("fingerprint") != store.model_info.get("fingerprint"):
        return [], 0
    position = {shard.number: k for k, shard in enumerate(store.shards)}
    segments, covered = [], 0
    for saved in state.get("segments", []):
        try:
            segment = Segment(str(saved["file"]), str(saved["kind"]), [int(v) for v in saved["shards"]],
                              int(saved["first"]), int(saved["count"]))
        except (KeyError, TypeError, ValueError):
            break
        start, end = position.get(segment.shards[0]), position.get(segment.shards[-1])
        if start != covered or end is None or end < start or segment.kind not in MARGIN:
            break
        held = store.shards[start : end + 1]
        if segment.first != held[0].first or segment.count != sum(s.faces for s in held):
            break
        path = folder / Path(segment.file).name
        version = identity(path)
        trusted = store.record.has(f"{FOLDER}/{path.name}", version)
        if not trusted and segment.kind == "ivfpq":
            break  # an inverted file cannot be checked for less than rebuilding it
        segment.index = _load(path, segment, dim)
        if segment.index is None:
            break
        if not trusted:
            if not _holds_exactly(store, segment, held, distance):
                break
            store.record.add(f"{FOLDER}/{path.name}", version)
        segments.append(segment)
        covered = end + 1
    store.record.save()
    return segments, covered


def _holds_exactly(store, segment: Segment, held: list, distance: str) -> bool:
    """Whether a flat or HNSW segment this user's facetwin did not write (an index copied, moved to another machine,
    or a crafted file) holds exactly the faces of its shards, and, for a graph, one FAISS can walk."""
    if segment.kind == "hnsw" and not walkable(segment.index):
        return False
    stored, start = stored_vectors(segment.index), 0
    for vectors in _vectors(store, held, distance):
        if not np.allclose(stored[start : start + len(vectors)], vectors, atol=1e-6):
            return False
        start += len(vectors)
    return start == len(stored)


def _state(folder: Path) -> dict | None:
    try:
        state = json.loads((folder / STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and state.get("format") == FORMAT else None


def _load(path: Path, segment: Segment, dim: int):
    """A segment's FAISS index, or None when it does not hold what the state says."""
    try:
        if path.stat().st_size > segment.count * (4 * dim + 16 * M + 64) + 2**24:
            return None  # far larger than such an index can be: not read at all
        index = faiss.read_index(str(path))
    except (RuntimeError, OSError, MemoryError):
        return None
    if index.ntotal != segment.count or index.d != dim:
        return None
    return _tuned(index, segment.kind)


@contextlib.contextmanager
def _writer(folder: Path):
    """Hold ``ann/.lock`` (one writer of the ANN at a time); yields True."""
    paths.private_folder(folder)
    with open(paths.private_file(folder / ".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield True


def _vectors(store, shards, distance: str):
    """The prepared embeddings of every row of ``shards``, one shard at a time."""
    for shard in shards:
        yield to_query(matrix(store.shard_table(shard, ["embedding"]), "embedding"), distance)


def _metric(distance: str) -> int:
    return faiss.METRIC_INNER_PRODUCT if distance == "cosine" else faiss.METRIC_L2


def build(store, shards, distance: str, kind: str):
    """A FAISS index of ``kind`` holding every face of ``shards`` (read one shard at a time)."""
    dim, metric = int(store.model_info["embedding_dim"]), _metric(distance)
    if kind == "flat":
        index = faiss.IndexFlat(dim, metric)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, M, metric)
        index.hnsw.efConstruction = EF_CONSTRUCTION
    else:
        count = sum(s.faces for s in shards)
        lists = 1 << max(8, round(math.log2(math.sqrt(count))))
        codes = dim // 2 if dim % 2 == 0 else dim  # 4-bit codes of 2 dimensions each (32 bytes a face at 128)
        scan = faiss.IndexIVFPQFastScan(faiss.IndexFlat(dim, metric), dim, lists, codes, 4, metric)
        index = faiss.IndexRefine(scan, faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, metric))
        index.train(_sample(store, shards, distance, lists * TRAIN_PER_LIST))
    for vectors in _vectors(store, shards, distance):
        index.add(vectors)
    return index


def _sample(store, shards, distance: str, size: int) -> np.ndarray:
    """About ``size`` faces from shards drawn at random (whole shards: each is one read)."""
    order = np.random.default_rng(0).permutation(len(shards))
    taken, total = [], 0
    for k in order:
        if total >= size:
            break
        taken.append(int(k))
        total += shards[int(k)].faces
    return np.concatenate(list(_vectors(store, [shards[k] for k in sorted(taken)], distance)))


def _extended(store, folder: Path, distance: str, segments: list[Segment], covered: int,
              saving: bool) -> list[Segment]:
    """``segments`` extended to every shard of the store: a new delta of the new shards' faces, or, past
    ``DELTA_MAX`` faces in deltas (or with no base), a base folded or rebuilt; saved when ``saving``."""
    new = store.shards[covered:]
    base, deltas = (segments[0], segments[1:]) if segments else (None, [])
    pending = sum(d.count for d in deltas) + sum(s.faces for s in new)
    if base is not None and pending <= DELTA_MAX:
        made = [_segment(store, new, distance, "flat")]
        segments = [base, *deltas, *made]
    else:
        total = store.shards[: covered + len(new)]
        kind = kind_for(sum(s.faces for s in total))
        if base is not None and base.kind == kind:
            for vectors in _vectors(store, total[len(_held(store, base)):], distance):
                base.index.add(vectors)
            made = [_segment(store, total, distance, kind, base.index)]
        else:
            made = [_segment(store, total, distance, kind)]
        segments = made
    if saving:
        _save(store, folder, distance, segments, made)
    return segments


def _held(store, segment: Segment) -> list:
    """The shards of the store that ``segment`` holds."""
    numbers = [s.number for s in store.shards]
    return store.shards[numbers.index(segment.shards[0]) : numbers.index(segment.shards[-1]) + 1]


def _segment(store, shards, distance: str, kind: str, index=None) -> Segment:
    """A new segment of ``kind`` holding ``shards`` (``index``: already built)."""
    index = _tuned(index if index is not None else build(store, shards, distance, kind), kind)
    name = f"{kind}-{shards[0].number:06d}-{shards[-1].number:06d}-{uuid.uuid4().hex[:8]}.faiss"
    return Segment(name, kind, [shards[0].number, shards[-1].number], shards[0].first, sum(s.faces for s in shards),
                   index)


def _tuned(index, kind: str):
    """``index`` set to search as deep as its kind should: HNSW ``EF_SEARCH``, IVF one list in ``PROBED_SHARE``."""
    if kind == "hnsw":
        index.hnsw.efSearch = EF_SEARCH
    elif kind == "ivfpq":
        ivf = faiss.extract_index_ivf(index)
        ivf.nprobe = max(1, ivf.nlist // PROBED_SHARE)
    return index


def _save(store, folder: Path, distance: str, segments: list[Segment], made: list[Segment]) -> None:
    """Write the new segments' files, then the state (the commit point), then remove the files it no longer names;
    each file written is recorded as this user's. A failure leaves the saved state as it was."""
    try:
        for segment in made:
            paths.atomic_write(folder / segment.file, lambda tmp, s=segment: faiss.write_index(s.index, str(tmp)),
                               private=True)
            store.record.add(f"{FOLDER}/{segment.file}", identity(folder / segment.file))
        state = {"format": FORMAT, "distance": distance, "dim": int(store.model_info["embedding_dim"]),
                 "fingerprint": store.model_info.get("fingerprint"), "segments": [s.record() for s in segments]}
        paths.atomic_write_text(folder / STATE, json.dumps(state), private=True)
    except (FacetwinError, RuntimeError):
        return
    store.record.save()
    named = {s.file for s in segments}
    for old in folder.glob("*.faiss"):
        if old.name not in named:
            old.unlink(missing_ok=True)


__all__ = ["Ann", "open_ann", "build", "kind_for", "FOLDER", "HNSW_MAX", "DELTA_MAX", "PROBED_SHARE"]
