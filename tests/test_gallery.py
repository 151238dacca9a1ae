"""Gallery: enroll / identify / remove on real photos through the CLI, erasure, concurrency, HNSW search."""

from __future__ import annotations

import multiprocessing
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from facetwin.errors import FacetwinError
from facetwin.gallery import Gallery
from facetwin.gallery.index import EF_SEARCH, AnnIndex

from conftest import DATA, need

PHOTOS = DATA / "face_recognition_examples"


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "facetwin.cli", *map(str, args)], capture_output=True, text=True)


def test_enroll_identify_remove_through_the_cli(tmp_path):
    photos = need(PHOTOS)
    db = tmp_path / "people.db"
    obama = [photos / "obama/obama.jpg", photos / "obama/obama1.jpg"]
    assert _cli("enroll", "obama", *obama, "--gallery", db).returncode == 0
    assert _cli("enroll", "biden", photos / "biden/biden.jpg", "--gallery", db).returncode == 0
    done = _cli("identify", photos / "obama/obama2.jpg", "--gallery", db, "--top-k", "2")
    assert done.returncode == 0 and done.stdout.startswith("obama"), done.stdout + done.stderr
    done = _cli("identify", photos / "rose_leslie/img1.jpg", "--gallery", db)
    assert done.stdout.startswith("unknown"), done.stdout
    listing = _cli("gallery", "list", "--gallery", db).stdout
    assert "obama\t2" in listing and "biden\t1" in listing
    assert _cli("gallery", "remove", "biden", "--gallery", db).returncode == 0
    assert "biden" not in _cli("gallery", "list", "--gallery", db).stdout
    done = _cli("gallery", "remove", "nobody", "--gallery", db)
    assert done.returncode == 2 and "no person named 'nobody'" in done.stderr


def test_removed_person_leaves_no_trace_in_the_file(tmp_path):
    db = tmp_path / "g.db"
    gallery = Gallery(db)
    rng = np.random.default_rng(0)
    secret = rng.standard_normal((3, 128)).astype(np.float32)
    gallery.enroll_embeddings("Zebulon_Secretname", secret)
    gallery.enroll_embeddings("someone_else", rng.standard_normal((2, 128)).astype(np.float32))
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"Zebulon_Secretname" in raw and secret[0].tobytes() in raw  # the check can fail
    assert gallery.remove("Zebulon_Secretname") == 3
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"Zebulon_Secretname" not in raw
    assert not any(v.tobytes()[:64] in raw for v in secret)
    assert [p.name for p in gallery.people()] == ["someone_else"]


def test_a_gallery_refuses_another_model(tmp_path):
    db = tmp_path / "g.db"
    Gallery(db).enroll_embeddings("Ada", np.ones((1, 128), np.float32))  # the first enrolment records the model
    with sqlite3.connect(db) as con:
        con.execute("UPDATE meta SET value = 'f' || value WHERE key = 'model_fingerprint'")
    with pytest.raises(FacetwinError, match="cannot be searched or extended with another model"):
        Gallery(db, "sface")
    lazy = Gallery(db)  # listing needs no model ...
    assert [p.name for p in lazy.people()] == ["Ada"]
    with pytest.raises(FacetwinError, match="cannot be searched or extended with another model"):
        lazy.search(np.ones(128, np.float32))  # ... searching does, and is refused


def _enroll_many(args):
    db, worker = args
    gallery = Gallery(db)
    rng = np.random.default_rng(worker)
    for i in range(500):
        gallery.enroll_embeddings(f"w{worker}_p{i}", rng.standard_normal((1, 128)).astype(np.float32))


def test_four_processes_enroll_at_once(tmp_path):
    db = tmp_path / "g.db"
    Gallery(db)
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.map(_enroll_many, [(str(db), w) for w in range(4)])
    stats = Gallery(db).stats()
    assert stats["people"] == 2000 and stats["embeddings"] == 2000


def test_hnsw_index_agrees_with_exact_search(tmp_path):
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((600, 128)).astype(np.float32)
    people = [f"p{i}" for i in range(600)]
    exact = Gallery(tmp_path / "exact.db")
    approx = Gallery(tmp_path / "approx.db", index_threshold=100)
    for name, v in zip(people, vectors, strict=True):
        exact.enroll_embeddings(name, v)
        approx.enroll_embeddings(name, v)
    hits = 0
    for i in range(0, 600, 10):
        probe = vectors[i] + 0.05 * rng.standard_normal(128).astype(np.float32)
        e, a = exact.search(probe), approx.search(probe)
        assert e.method == "exact" and a.method == "faiss-hnsw"
        hits += a.matches[0].person == e.matches[0].person == f"p{i}"
    assert hits >= 58
    assert (tmp_path / "approx.db.hnsw").exists()
    assert exact.ann_index() is None
    index = approx.ann_index()
    assert index.ef_search == EF_SEARCH
    index.ef_search = 64  # the benchmark's sweep knob reaches the FAISS graph
    assert index.index.hnsw.efSearch == 64


def _unit(rng, n: int) -> np.ndarray:
    v = rng.standard_normal((n, 128)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_hnsw_index_grows_with_enrolment_and_is_erased_on_remove(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    db = tmp_path / "big.db"
    first, later = _unit(rng, 300), _unit(rng, 40)
    gallery = Gallery(db, index_threshold=100)
    gallery.enroll_many({f"p{i}": first[i : i + 1] for i in range(300)})
    assert gallery.search(first[7]).matches[0].person == "p7"  # builds and saves the index

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the saved index was rebuilt instead of extended")

    with monkeypatch.context() as patch:
        patch.setattr(AnnIndex, "build", no_rebuild)
        gallery.enroll_many({f"q{i}": later[i : i + 1] for i in range(40)})
        fresh = Gallery(db, index_threshold=100)  # another process: reads the saved index from disk
        result = fresh.search(later[5])
        assert result.method == "faiss-hnsw" and result.matches[0].person == "q5"
        assert fresh.ann_index().index.ntotal == 340
        assert fresh.search(first[9]).matches[0].person == "p9"

    index_file = tmp_path / "big.db.hnsw"
    assert later[5].tobytes() in index_file.read_bytes()  # the index holds copies of the embeddings
    fresh.remove("q5")
    assert not index_file.exists()
    result = fresh.search(later[5])  # rebuilt without q5
    assert result.method == "faiss-hnsw" and result.matches[0].person != "q5"
    assert fresh.ann_index().index.ntotal == 339
    assert later[5].tobytes() not in index_file.read_bytes()
