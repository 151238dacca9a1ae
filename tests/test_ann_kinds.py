"""The ANN's larger kinds on small synthetic indexes (the size limits lowered): an IVF-PQ fast-scan base searched
with one list in ``PROBED_SHARE`` and re-ranked by 8-bit copies, an HNSW base, a flat delta beside either; ``find``
returns the same photos as exact search for a person whose faces are spread over every shard. An ANN saved with a
kind this facetwin no longer builds (IVF-SQ8) is rebuilt."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from facetwin.collection import ann

DIM = 128


def _commit(index, model, vectors: np.ndarray, first: int, per_shard: int) -> None:
    from facetwin.collection.records import Photo
    from facetwin.collection.shards import IndexStore

    store = IndexStore(index, model, write=True)
    try:
        store.archive_root = store.archive_root or str(index.parent)
        for start in range(0, len(vectors), per_shard):
            photos = []
            for k in range(start, min(start + per_shard, len(vectors))):
                n = first + k
                info = {"path": f"p/{n:07d}.jpg", "sha256": hashlib.sha256(str(n).encode()).hexdigest(), "size": n,
                        "mtime_ns": n, "width": 640, "height": 480, "error": ""}
                photos.append(Photo(info, [{"face": 0, "box": np.asarray([1, 2, 30, 40], np.float32),
                                            "landmarks": np.zeros(10, np.float32), "score": 0.9,
                                            "embedding": vectors[k]}]))
            store.commit(photos)
    finally:
        store.close()


def _faces(rng, count: int, person: np.ndarray, own: np.ndarray) -> np.ndarray:
    """``count`` strangers, with the faces at positions ``own`` made the person's (centre plus small noise)."""
    x = rng.standard_normal((count, DIM)).astype(np.float32)
    x[own] = person + 0.25 * rng.standard_normal((len(own), DIM)).astype(np.float32) / np.sqrt(DIM)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("kind", ["ivfpq", "hnsw"])
def test_a_larger_base_and_its_delta_find_what_exact_search_finds(tmp_path, model, monkeypatch, kind):
    from facetwin.collection.find import Finder

    monkeypatch.setattr(ann, "FLAT_MAX", 1_000)
    monkeypatch.setattr(ann, "HNSW_MAX", 5_000 if kind == "ivfpq" else 50_000)
    rng = np.random.default_rng(3)
    person = rng.standard_normal(DIM).astype(np.float32)
    person /= np.linalg.norm(person)
    own = rng.choice(12_000, 15, replace=False)
    index = tmp_path / "index"
    _commit(index, model, _faces(rng, 12_000, person, own), 0, 2_000)
    finder = Finder(index, model)
    finder.load()
    base = finder._current().ann.segments[0]
    assert base.kind == kind
    query = person + 0.25 * rng.standard_normal(DIM).astype(np.float32) / np.sqrt(DIM)
    if kind == "ivfpq":
        ivf = __import__("faiss").extract_index_ivf(base.index)
        assert ivf.nlist >= 64 and ivf.nprobe == ivf.nlist // ann.PROBED_SHARE
        ids, dists = finder._current().ann.search(query[None] / np.linalg.norm(query), 10)  # re-ranked, 8-bit copies
        rows = finder._current().rows.read(ids[0])["embedding"]
        assert np.abs(dists[0] - (1 - rows @ (query / np.linalg.norm(query)))).max() <= ann.MARGIN["ivfpq"]
    hits, searched = finder.find_embedding(query, 20)
    assert searched == 12_000 and {h.face_id for h in hits} == set(own.tolist())
    assert all(h.path.endswith(f"p/{h.face_id:07d}.jpg") for h in hits)

    more = _faces(rng, 500, person, np.asarray([7]))  # one more photo of the person, in a new shard
    _commit(index, model, more, 12_000, 500)
    hits, searched = finder.find_embedding(query, 20)
    assert finder._current().ann.name == f"faiss-{kind}+flat" and searched == 12_500
    assert {h.face_id for h in hits} == {*own.tolist(), 12_007}


def test_an_ann_of_a_kind_no_longer_built_is_rebuilt_then_extended(tmp_path, model, monkeypatch):
    import json

    from facetwin.collection.find import Finder

    monkeypatch.setattr(ann, "FLAT_MAX", 1_000)
    monkeypatch.setattr(ann, "HNSW_MAX", 2_000)
    rng = np.random.default_rng(5)
    person = rng.standard_normal(DIM).astype(np.float32)
    own = rng.choice(4_000, 5, replace=False)
    index = tmp_path / "index"
    _commit(index, model, _faces(rng, 4_000, person / np.linalg.norm(person), own), 0, 1_000)
    Finder(index, model).load()
    state_file = index / ann.FOLDER / ann.STATE
    state = json.loads(state_file.read_text())
    state["segments"][0]["kind"] = "ivf"  # as an earlier facetwin saved its IVF-SQ8 base
    state_file.write_text(json.dumps(state))
    finder = Finder(index, model)
    finder.load()
    assert [s.kind for s in finder._current().ann.segments] == ["ivfpq"]
    assert json.loads(state_file.read_text())["segments"][0]["kind"] == "ivfpq"
    hits, _ = finder.find_embedding(person, 20)
    assert set(own.tolist()) <= {h.face_id for h in hits}

    monkeypatch.setattr(ann, "DELTA_MAX", 100)  # past it, new faces are added to the IVF-PQ base (saved again)
    _commit(index, model, _faces(rng, 500, person / np.linalg.norm(person), np.asarray([3])), 4_000, 500)
    hits, searched = finder.find_embedding(person, 20)
    assert [(s.kind, s.count) for s in finder._current().ann.segments] == [("ivfpq", 4_500)] and searched == 4_500
    assert {*own.tolist(), 4_003} <= {h.face_id for h in hits}
    assert [(s.kind, s.count) for s in Finder(index, model)._current().ann.segments] == [("ivfpq", 4_500)]
