"""``find`` reads its hits from each shard's memory-mapped rows (``INDEX_DIR/rows/``): made once from the shards,
the same values as the shards hold, never trusted when changed behind facetwin's back, and kept in memory where the
index folder cannot be written."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from index_helpers import PROBE, photo_copy

from facetwin.collection.index_check import matrix


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A real index of three shards, its finder never opened."""
    import facetwin

    root = tmp_path_factory.mktemp("rows")
    index = root / "index"
    facetwin.index([photo_copy(root)], index, engine="local", progress=False, shard_photos=5)
    return index


@pytest.fixture
def index(pristine, tmp_path):
    return shutil.copytree(pristine, tmp_path / "index")


def _hits(index, model) -> list[tuple]:
    from facetwin.collection.find import Finder

    found = Finder(index, model).find(PROBE).hits
    assert found
    return [(h.path, h.sha256, h.face, h.face_id, h.box, h.score, round(h.distance, 6)) for h in found]


def test_rows_are_made_once_and_hold_what_the_shards_hold(index, model, monkeypatch):
    from facetwin.collection import face_rows
    from facetwin.collection.shards import IndexStore

    first = _hits(index, model)
    store = IndexStore(index)
    files = sorted((index / "rows").iterdir())
    assert [f.name for f in files] == [f"rows-{s.number:06d}.npy" for s in store.shards]
    ids = np.arange(store.next_face_id)
    rows = face_rows.FaceRows(store).read(ids[::-1])[::-1]
    table = store.fetch(ids, ["path", "sha256", "face", "box", "score", "embedding"])
    assert [p.decode() for p in rows["path"]] == table["path"].to_pylist()
    assert [s.decode() for s in rows["sha256"]] == table["sha256"].to_pylist()
    assert np.array_equal(rows["embedding"], matrix(table, "embedding"))
    assert np.array_equal(rows["box"], matrix(table, "box"))
    assert np.array_equal(rows["score"], table["score"].to_numpy()) and np.array_equal(rows["face"], table["face"])

    def no_shard_reads(*args):
        raise AssertionError("a shard was read for rows this user's facetwin made")

    monkeypatch.setattr(face_rows, "rows_of", no_shard_reads)
    assert face_rows.FaceRows(IndexStore(index)).ensure() == 0
    assert _hits(index, model) == first


def test_a_rows_file_changed_behind_facetwins_back_is_made_again(index, model):
    """Two faces' paths swapped in place (the file's size and name unchanged): trusted, find would name the wrong
    photo; it is made again from the shards instead."""
    first = _hits(index, model)
    target = next(h[3] for h in first)  # the best hit's face id
    from facetwin.collection.shards import IndexStore

    store = IndexStore(index)
    shard = store.shards[int(store.shard_of(np.asarray([target]))[0])]
    file = index / "rows" / f"rows-{shard.number:06d}.npy"
    rows = np.load(file, mmap_mode="r+")
    local = target - shard.first
    other = (local + 1) % len(rows)
    rows["path"][[local, other]] = rows["path"][[other, local]]
    rows.flush()
    del rows
    assert _hits(index, model) == first
    again = np.load(file)
    assert again["path"][local].decode() == store.fetch([target], ["path"])["path"][0].as_py()


def test_rows_stay_in_memory_where_they_cannot_be_written(index, model, tmp_path):
    expected = _hits(shutil.copytree(index, tmp_path / "other"), model)
    (index / "rows").write_text("not a folder")
    assert [h[1:] for h in _hits(index, model)] == [h[1:] for h in expected]
    assert (index / "rows").read_text() == "not a folder"


_KILLED_WRITING_ROWS = """
import os, signal, sys
from facetwin.core import paths
atomic_write = paths.atomic_write
def killed(path, write, **kwargs):
    def half(tmp):  # the rows written to the temporary file, killed before it is renamed into place
        write(tmp)
        if str(path).endswith('.npy'):
            os.kill(os.getpid(), signal.SIGKILL)
    return atomic_write(path, half, **kwargs)
paths.atomic_write = killed
from facetwin.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_kill_9_while_rows_are_made_leaves_no_rows_file(index, model, facetwin_home):
    import os
    import subprocess
    import sys

    env = {**os.environ, "FACETWIN_HOME": str(facetwin_home)}
    done = subprocess.run([sys.executable, "-c", _KILLED_WRITING_ROWS, "find", str(PROBE), "--index", str(index)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == -9, done.stderr[-2000:]
    left = sorted(p.name for p in (index / "rows").iterdir())
    assert len(left) == 1 and left[0].startswith(".rows-000000.npy.") and left[0].endswith(".tmp")
    assert _hits(index, model)  # made again, whole
    assert (index / "rows" / "rows-000000.npy").is_file()
    from facetwin.collection.shards import IndexStore

    IndexStore(index, write=True).close()  # the next writer removes what the killed run left
    assert not [p for p in (index / "rows").iterdir() if p.name.endswith(".tmp")]
