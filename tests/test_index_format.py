"""Index format 2 on real photos: a format 1 index migrated once (atomically), an archive that moves (``--root``, or
found beside its index), a root that widens for photos from elsewhere, opening and "is this photo indexed?" that
read only what they need, and files changed behind facetwin's back checked again."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from index_helpers import EXAMPLES, PROBE, cli, edit_photos, format_1, photo_copy, snapshot

from collection_helpers import assert_same_faces, photos_of

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Photos and their format 2 index (three shards, a photo changed and indexed again, clustered)."""
    import facetwin
    from facetwin.collection import people

    root = tmp_path_factory.mktemp("format")
    photos = photo_copy(root)
    index = root / "index"
    facetwin.index([photos], index, engine="local", progress=False, shard_photos=5)
    changed = photos / "biden" / "biden.jpg"
    shutil.copy(photos / "obama" / "obama.jpg", changed)
    os.utime(changed, ns=(1, 2))
    facetwin.index([photos], index, engine="local", progress=False)
    people.cluster_index(index)
    return photos, index


def _hits(index, *extra) -> list[str]:
    """The photos ``find`` lists for the probe (sorted: two copies of one photo tie)."""
    code, out, err = cli("find", PROBE, "--index", index, "--json", *extra)
    assert code == 0, err
    return sorted(hit["path"] for hit in json.loads(out)["hits"])


def test_a_format_1_index_is_migrated_once_to_the_same_faces(reference, tmp_path):
    from facetwin.collection import IndexStore, cluster_store

    photos, index = reference
    old = format_1(shutil.copytree(index, tmp_path / "old"))
    assert json.loads((old / "manifest.json").read_text())["format"] == "facetwin-index/1"
    assert _hits(old) == _hits(index)  # find migrates it
    store = IndexStore(old)
    assert store.manifest["format"] == "facetwin-index/2" and store.manifest["migrated"]
    assert store.archive_root == str(photos) and store.counts() == IndexStore(index).counts()
    assert store.counts()["retired_faces"] == 1 and not (old / "faces.hnsw").exists()
    assert_same_faces(index, old)
    assert photos_of(index) == photos_of(old)
    assert cluster_store.load(old).names == cluster_store.load(index).names
    assert cli("index", photos, "--out", old, "--json")[1].count('"todo": 0') == 1  # nothing to redo
    migrated = snapshot(old)
    assert _hits(old) == _hits(index) and snapshot(old) == migrated  # once


def test_a_migration_killed_before_its_manifest_leaves_format_1(reference, tmp_path):
    _, index = reference
    old = format_1(shutil.copytree(index, tmp_path / "old"))
    before = (old / "manifest.json").read_text()
    script = ("import os, signal, sys\nfrom facetwin.core import paths\nwrite = paths.atomic_write_text\n"
              "def killed(path, *a, **k):\n    if str(path).endswith('manifest.json'):\n"
              "        os.kill(os.getpid(), signal.SIGKILL)\n    return write(path, *a, **k)\n"
              "paths.atomic_write_text = killed\nfrom facetwin.collection import IndexStore\n"
              f"IndexStore({str(old)!r})\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == -9, done.stderr
    assert (old / "manifest.json").read_text() == before and (old / "photos").is_dir()  # half done: format 1
    assert _hits(old) == _hits(index)
    assert sorted(p.name for p in (old / "photos").iterdir()) == [f"photos-00000{k}.parquet" for k in range(4)]


def test_a_damaged_format_1_index_is_one_sentence_and_stays_as_it_was(reference, tmp_path):
    import pyarrow.parquet as pq

    _, index = reference
    old = format_1(shutil.copytree(index, tmp_path / "old"))
    shard = old / "shards" / "shard-000001.parquet"
    table = pq.read_table(shard)
    meta = dict(table.schema.metadata)
    photos = json.loads(meta[b"facetwin.photos"])
    photos[0]["path"] = "relative/x.jpg"
    meta[b"facetwin.photos"] = json.dumps(photos).encode()
    pq.write_table(table.replace_schema_metadata(meta), shard)
    before = snapshot(old)
    code, _, err = cli("find", PROBE, "--index", old)
    assert code == 2 and err.count("\n") == 1 and "shard-000001.parquet" in err and "absolute path" in err
    assert snapshot(old) == before


def test_an_archive_moved_is_found_through_root_or_beside_its_index(reference, tmp_path):
    import facetwin
    from facetwin.collection import IndexStore

    photos, index = reference
    archive = tmp_path / "archive"
    shutil.copytree(photos, archive / "photos")
    facetwin.index([archive / "photos"], archive / "photos.idx", progress=False)  # the index beside its archive
    expected = sorted(p.replace(str(photos), str(archive / "photos")) for p in _hits(index))
    assert _hits(archive / "photos.idx") == expected
    moved = tmp_path / "mounted-elsewhere"
    archive.rename(moved)
    found = sorted(p.replace(str(archive), str(moved)) for p in expected)
    assert _hits(moved / "photos.idx") == found  # the old root is gone: found beside the index
    assert IndexStore(moved / "photos.idx").archive_root == str(moved / "photos")
    assert _hits(moved / "photos.idx", "--root", moved / "photos") == found
    other = tmp_path / "other-copy"
    shutil.copytree(photos, other)
    assert _hits(moved / "photos.idx", "--root", other) == sorted(p.replace(str(photos), str(other))
                                                                  for p in _hits(index))
    code, out, _ = cli("index", moved / "photos", "--out", moved / "photos.idx", "--root", moved / "photos", "--json")
    assert code == 0 and json.loads(out)["todo"] == 0  # same paths below the root, same files: nothing to redo
    assert json.loads((moved / "photos.idx" / "manifest.json").read_text())["root"] == str(moved / "photos")
    code, _, err = cli("find", PROBE, "--index", moved / "photos.idx", "--root", tmp_path / "nowhere")
    assert code == 2 and "nowhere: no such folder" in err


def test_photos_from_elsewhere_widen_the_root_without_rewriting(tmp_path):
    import facetwin
    from facetwin.collection import IndexStore

    first, second = tmp_path / "2019", tmp_path / "2020"
    shutil.copytree(EXAMPLES / "obama", first / "obama")
    shutil.copytree(EXAMPLES / "biden", second / "biden")
    index = tmp_path / "index"
    facetwin.index([first], index, progress=False)
    written = {p.name: p.read_bytes() for p in (index / "photos").iterdir()}
    facetwin.index([second], index, progress=False)
    store = IndexStore(index)
    assert store.archive_root == str(tmp_path) and store.shards[0].prefix == "2019"
    assert all((index / "photos" / name).read_bytes() == data for name, data in written.items())
    assert set(photos_of(index)) == {str(p) for p in [*first.rglob("*.jp*g"), *second.rglob("*.jp*g")]}
    assert facetwin.index([first, second], index, progress=False).todo == 0
    assert {Path(p).parent.name for p in _hits(index)} == {"obama"}


def test_opening_reads_no_shard_and_a_lookup_only_the_tables_that_can_hold_it(reference, monkeypatch):
    from facetwin.collection import shards
    from facetwin.collection.shards import IndexStore

    _, index = reference
    IndexStore(index)  # this user's facetwin has checked every file of this index
    reads: list[str] = []
    real = shards._read
    monkeypatch.setattr(shards, "_read", lambda file, *a: reads.append(Path(file).name) or real(file, *a))
    store = IndexStore(index)
    assert reads == []
    found = store.lookup(["biden/biden.jpg"])
    assert found["biden/biden.jpg"]["photo_id"] == 13 and reads == ["photos-000000.parquet", "photos-000003.parquet"]
    reads.clear()
    assert store.lookup(["zz/not-indexed.jpg"]) == {} and reads == []


def test_a_file_changed_after_it_was_checked_is_checked_again(reference, tmp_path):
    _, index = reference
    copy = shutil.copytree(index, tmp_path / "index")
    assert _hits(copy) == _hits(index)  # checked once: later opens read no shard
    edit_photos(copy, lambda rows: [row.update(sha256=row["sha256"][::-1]) for row in rows], 2, manifest=False)
    code, _, err = cli("find", PROBE, "--index", copy)
    assert code == 2 and err.count("\n") == 1 and "shard-000002.parquet" in err and "sha256" in err
