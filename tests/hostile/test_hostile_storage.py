"""What facetwin leaves on disk (issue 27, items 7, 8 and 10, and the permission policy): stores of faces are the
owner's alone, results follow the umask, a Ctrl-C never saves a photo twice, and ``train --out`` never overwrites
a user's own files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from index_helpers import PROBE, build, cli, modes, photo_copy

from conftest import DATA, need

LFW = DATA / "lfw-dev" / "images"


@pytest.fixture
def umask():
    """Set the process umask for a test (what a user's shell would have), and put it back."""
    saved = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(saved)


def test_stores_of_faces_are_owner_only(tmp_path, facetwin_home, umask):
    umask(0o022)  # a common umask: without the policy every file below would be 0644
    index = build(tmp_path, photo_copy(tmp_path))
    store = modes(index)
    folders = {"index", "index/shards", "index/photos", "index/ann", "index/graph", "index/rows"}
    ann = json.loads((index / "ann" / "state.json").read_text())["segments"][0]["file"]
    graph = json.loads(pq.read_metadata(index / "clusters.parquet").metadata[b"facetwin.clusters"])["graphs"][0]
    assert {"index/shards/shard-000000.parquet", "index/photos/photos-000000.parquet", "index/manifest.json",
            "index/clusters.parquet", "index/ann/state.json", f"index/ann/{ann}", f"index/graph/{graph}",
            "index/rows/rows-000000.npy", *folders} <= set(store)
    assert all(store[name] == 0o700 for name in folders), store
    assert all(mode == 0o600 for name, mode in store.items() if name not in folders), store
    verified = facetwin_home / "verified"  # which versions of the index's files this user checked
    assert modes(verified)["verified"] == 0o700 and set(modes(verified).values()) == {0o700, 0o600}
    code, _, err = cli("gallery", "import", index)  # into the model's default gallery in $FACETWIN_HOME
    assert code == 0, err
    galleries = facetwin_home / "galleries"
    assert modes(galleries) == {"galleries": 0o700, "galleries/sface.db": 0o600, "galleries/sface.db-wal": 0o600,
                                "galleries/sface.db-shm": 0o600}
    assert modes(facetwin_home)["facetwin-home"] == 0o700


def test_a_store_written_by_an_earlier_release_is_made_owner_only(tmp_path, umask):
    from facetwin.gallery import Gallery

    umask(0o022)
    photos = photo_copy(tmp_path)
    index = build(tmp_path, photos)
    gallery = tmp_path / "people.db"
    assert cli("gallery", "import", index, "--gallery", gallery)[0] == 0
    for path in [index, *index.rglob("*"), *tmp_path.glob("people.db*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)  # what the release before this one left
    assert cli("index", photos, "--out", index, "--quiet")[0] == 0
    assert cli("find", PROBE, "--index", index)[0] == 0
    Gallery(gallery).people()
    found = {**modes(index), **{p.name: os.stat(p).st_mode & 0o777 for p in tmp_path.glob("people.db*")}}
    assert all(mode & 0o077 == 0 for mode in found.values()), {k: oct(v) for k, v in found.items()}


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_results_a_user_shares_follow_the_umask(tmp_path, facetwin_home, umask, mask):
    people = [p for p in sorted(need(LFW).iterdir()) if len(list(p.glob("*.jpg"))) >= 2][:4]
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("\n".join(["1\t2", *(f"{p.name} 1 2" for p in people[:2]),
                                f"{people[2].name} 1 {people[3].name} 1", f"{people[0].name} 1 {people[3].name} 2"]))
    umask(mask)
    out = tmp_path / "results"
    assert cli("evaluate", pairs, "--images", LFW, "--backbone", "sface", "--json", out / "r.json",
               "--plot", out / "r.png", "--quiet")[0] == 0
    assert cli("embed", PROBE, "--out", out / "e.npy")[0] == 0
    expected = 0o666 & ~mask
    assert {p.name: os.stat(p).st_mode & 0o777 for p in out.iterdir()} == dict.fromkeys(
        ("r.json", "r.png", "e.npy"), expected)


# ---------------------------------------------------------------------------- item 7: Ctrl-C inside a commit

_CTRL_C_AFTER_A_COMMIT = """
import os, signal, sys
from facetwin.collection import shards
signal.signal(signal.SIGINT, signal.default_int_handler)  # as at a terminal, also when the tests run in the background
commit, done = shards.IndexStore.commit, []

def commit_then_ctrl_c(self, photos):  # a real Ctrl-C, arriving the moment the second shard is on disk
    path = commit(self, photos)
    done.append(path)
    if len(done) == 2:
        os.kill(os.getpid(), signal.SIGINT)
    return path

shards.IndexStore.commit = commit_then_ctrl_c
from facetwin.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_ctrl_c_right_after_a_commit_saves_no_photo_twice(tmp_path, facetwin_home):
    from facetwin.collection import IndexStore

    photos = photo_copy(tmp_path)
    index = tmp_path / "index"
    args = ["index", str(photos), "--out", str(index), "--engine", "local", "--shard-photos", "2", "--quiet"]
    done = subprocess.run([sys.executable, "-c", _CTRL_C_AFTER_A_COMMIT, *args], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 130 and "interrupted" in done.stderr, done.stderr[-2000:]
    assert cli(*args)[0] == 0  # the run again: what is missing is added
    store = IndexStore(index)
    saved = [path for shard in store.shards for path in store.photo_table(shard, ["path"])["path"].to_pylist()]
    assert len(saved) == len(set(saved)) == 13, "a photo was saved in two shards"
    counts = store.counts()
    assert counts["photos"] == 13 and counts["retired_faces"] == 0
    ids = store.read_faces(["face_id"])["face_id"].to_pylist()
    assert ids == list(range(len(ids))) and store.next_face_id == len(ids) == counts["faces"]


# ---------------------------------------------------------------------------- item 8: train --out


def test_train_refuses_a_folder_of_other_files_unless_overwrite(tmp_path):
    out = tmp_path / "my-results"
    out.mkdir()
    (out / "metrics.json").write_text('{"mine": true}\n')
    (out / "curves.png").write_bytes(b"my own figure")
    data = tmp_path / "people"
    data.mkdir()
    code, _, err = cli("train", data, "--out", out)
    assert code == 2 and err.count("\n") == 1 and "holds files but no training run" in err and "--overwrite" in err
    assert (out / "metrics.json").read_text() == '{"mine": true}\n'
    assert (out / "curves.png").read_bytes() == b"my own figure"
    code, _, err = cli("train", data, "--out", out, "--overwrite")  # asked for: the refusal steps aside
    assert code == 2 and "holds files but no training run" not in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "holds files" not in cli("train", data, "--out", empty)[2]
