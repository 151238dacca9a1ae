"""Helpers for the collection tests: folders of real photos with bad files mixed in, and face-by-face comparison."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from conftest import DATA, need


def photo_folder(root: Path, source: str = "face_recognition_examples", *, bad: bool = True) -> Path:
    """A copy of ``DATA/source`` (folders by person) plus, when ``bad``, broken, empty and non-image files."""
    src = need(DATA / source)
    folder = root / source
    shutil.copytree(src, folder, ignore=shutil.ignore_patterns("*.tsv", "*.txt", "*.md"))
    if bad:
        some = sorted(p for p in folder.rglob("*.jp*g"))[0]
        (folder / "bad").mkdir()
        (folder / "bad" / "broken.jpg").write_bytes(some.read_bytes()[:700])
        (folder / "bad" / "empty.jpg").write_bytes(b"")
        (folder / "bad" / "notes.md").write_text("not a photo\n")
        (folder / "bad" / "noise.bin").write_bytes(os.urandom(2048))
    return folder


def faces_by_key(index_dir: Path) -> dict:
    """``(path, face) -> row`` of an index (paths on this machine); fails if any face is there twice."""
    from facetwin.collection import IndexStore

    store = IndexStore(index_dir)
    rows = store.read_faces().to_pylist()
    keyed = {(store.absolute(r["path"]), r["face"]): r for r in rows}
    assert len(keyed) == len(rows), "a face is in the index twice"
    ids = [r["face_id"] for r in rows]
    assert len(set(ids)) == len(ids), "a face id is used twice"
    return keyed


def assert_same_faces(a: Path, b: Path, tol: float = 1e-5) -> int:
    """Both indexes hold the same faces (same boxes, embeddings within ``tol``); returns how many."""
    fa, fb = faces_by_key(a), faces_by_key(b)
    assert sorted(fa) == sorted(fb), f"faces differ: {sorted(set(fa) ^ set(fb))[:5]}"
    for key, row in fa.items():
        other = fb[key]
        assert row["sha256"] == other["sha256"]
        np.testing.assert_array_equal(row["box"], other["box"], err_msg=str(key))
        np.testing.assert_allclose(row["landmarks"], other["landmarks"], atol=1e-3, err_msg=str(key))
        np.testing.assert_allclose(row["embedding"], other["embedding"], atol=tol, rtol=0, err_msg=str(key))
    return len(fa)


def photos_of(index_dir: Path) -> dict:
    """``path -> (sha256, faces, error)`` of the latest version of every photo of an index (paths on this machine),
    read from its photos tables."""
    from facetwin.collection import IndexStore

    store = IndexStore(index_dir)
    latest: dict[str, dict] = {}
    for shard in store.shards:
        for row in store.photo_table(shard).to_pylist():
            if row["path"] not in latest or row["photo_id"] > latest[row["path"]]["photo_id"]:
                latest[row["path"]] = row
    return {store.absolute(p): (i["sha256"], i["faces"], i["error"] or None) for p, i in latest.items()}
