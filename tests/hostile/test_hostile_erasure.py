"""Erasure under concurrency: a reader holding a snapshot and an index rebuild racing a removal leave no byte
of the removed person in ``.db``, ``-wal`` or ``.hnsw`` (real SQLite, real FAISS, real processes)."""

from __future__ import annotations

import multiprocessing
import sqlite3
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from facetwin.core import distances as D
from facetwin.errors import FacetwinError
from facetwin.gallery import Gallery
from facetwin.gallery.db import GalleryBusy
from facetwin.gallery.index import AnnIndex

SECRET = "Zebulon_Secretname"


def _unit(rng, n: int) -> np.ndarray:
    v = rng.standard_normal((n, 128)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


_SCAN = """
import sys, pathlib
folder, needles = pathlib.Path(sys.argv[1]), [bytes.fromhex(h) for h in sys.argv[2:]]
for p in sorted(folder.iterdir()):
    if p.is_file() and any(n in p.read_bytes() for n in needles):
        print(p.name)
"""


def _traces(folder, vectors: np.ndarray) -> list[str]:
    """Files of ``folder`` that still hold the name or a 32-byte piece of any vector (raw or normalised).

    Read by another process: closing a file descriptor of the database in this process would drop the
    POSIX locks SQLite holds on it here (and another process could then reset the shared WAL index)."""
    needles = [SECRET.encode()]
    for v in (vectors, D.to_query(vectors, "cosine")):
        needles += [row.tobytes()[i : i + 32] for row in v for i in (0, 256)]
    done = subprocess.run(
        [sys.executable, "-c", _SCAN, str(folder), *(n.hex() for n in needles)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def _filled(path, model, rng, threshold: int = 40) -> tuple[Gallery, np.ndarray]:
    gallery = Gallery(path, model, index_threshold=threshold)
    gallery.enroll_many({f"p{i}": _unit(rng, 1) for i in range(40)})
    secret = _unit(rng, 3)
    gallery.enroll_embeddings(SECRET, secret)
    gallery.search(secret[0], top_k=1)  # builds and saves the HNSW index, which now holds the secret
    return gallery, secret


def _hold_snapshot(path, seconds: float, started: threading.Event) -> None:
    """Another reader: a read transaction open for ``seconds`` (it pins the WAL)."""
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("BEGIN")
    con.execute("SELECT COUNT(*) FROM embeddings").fetchone()
    started.set()
    time.sleep(seconds)
    con.execute("COMMIT")
    con.close()


def _rebuild_loop(path: str, seconds: float) -> None:
    """Another process that keeps opening the gallery and searching, (re)building and saving the index."""
    gallery_rng = np.random.default_rng(7)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            Gallery(path, index_threshold=40).search(_unit(gallery_rng, 1)[0], top_k=1)
        except FacetwinError:
            pass


def test_removal_waits_for_a_reader_and_erases_every_copy(tmp_path, model):
    rng = np.random.default_rng(0)
    gallery, secret = _filled(tmp_path / "g.db", model, rng)
    assert set(_traces(tmp_path, secret)) >= {"g.db.hnsw"}  # the check can see the bytes
    started = threading.Event()
    reader = threading.Thread(target=_hold_snapshot, args=(tmp_path / "g.db", 1.5, started))
    reader.start()
    started.wait(10)
    rebuild = multiprocessing.get_context("spawn").Process(target=_rebuild_loop, args=(str(tmp_path / "g.db"), 6.0))
    rebuild.start()
    time.sleep(1.0)  # the other process has built its index from the rows that include the secret
    assert gallery.remove(SECRET, timeout=20) == 3
    reader.join()
    rebuild.join(60)
    assert rebuild.exitcode == 0
    assert _traces(tmp_path, secret) == []
    assert not [p.name for p in tmp_path.iterdir() if "tmp" in p.name]


def test_a_stale_index_build_is_never_saved(tmp_path, model):
    """A build that read the rows before a removal tries to save after it: the generation fence refuses."""
    rng = np.random.default_rng(1)
    gallery, secret = _filled(tmp_path / "g.db", model, rng)
    other = Gallery(tmp_path / "g.db", model, index_threshold=40)
    snap = other._current()  # the rows as another process read them, secret included
    stale_removals = other._counter(other._db(), "removals")
    gallery.remove(SECRET)
    AnnIndex.load_or_build(
        tmp_path / "g.db", snap.generation, stale_removals, snap.ids, snap.vectors, "cosine",
        fence=lambda: other._fence(stale_removals),
    )
    assert _traces(tmp_path, secret) == []
    assert not (tmp_path / "g.db.hnsw").exists()


def test_a_reader_that_never_lets_go_gives_one_sentence_and_the_next_open_finishes(tmp_path, model):
    rng = np.random.default_rng(2)
    gallery, secret = _filled(tmp_path / "g.db", model, rng, threshold=10_000)
    started = threading.Event()
    reader = threading.Thread(target=_hold_snapshot, args=(tmp_path / "g.db", 3.0, started))
    reader.start()
    started.wait(10)
    with pytest.raises(GalleryBusy, match=r"g\.db-wal: the removed person is gone from the gallery"):
        gallery.remove(SECRET, timeout=0.5)
    reader.join()
    assert SECRET not in [p.name for p in Gallery(tmp_path / "g.db").people()]  # this open finishes the erasure
    assert _traces(tmp_path, secret) == []


def test_stale_temporary_index_files_are_deleted_on_remove(tmp_path, model):
    rng = np.random.default_rng(3)
    gallery, secret = _filled(tmp_path / "g.db", model, rng)
    leftover = tmp_path / "g.db.hnsw.tmp4242-1"  # what a killed index writer leaves
    leftover.write_bytes((tmp_path / "g.db.hnsw").read_bytes())
    gallery.remove(SECRET)
    assert not leftover.exists()
    assert _traces(tmp_path, secret) == []
