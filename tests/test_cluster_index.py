"""``facetwin cluster`` on a real index (faceapi_bbt: 8 people × 5 photos): cluster, update, name, merge, split."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facetwin.collection import cluster_store, people
from facetwin.collection.index_faces import read_faces
from facetwin.errors import FacetwinError

from cluster_helpers import add_shard
from conftest import DATA, need

BBT = DATA / "faceapi_bbt"


@pytest.fixture(scope="module")
def model():
    import facetwin

    return facetwin.load("sface")


@pytest.fixture(scope="module")
def built(tmp_path_factory, model) -> Path:
    root = tmp_path_factory.mktemp("bbt") / "index"
    add_shard(root, model, sorted(p for p in need(BBT).glob("*/*[123].png")))
    return root


@pytest.fixture
def index(built, tmp_path) -> Path:
    """A fresh copy of an index of photos 1-3 of each person (photos 4-5 are added by the tests that need them)."""
    return Path(shutil.copytree(built, tmp_path / "index"))


def person_of(path: str) -> str:
    return Path(path).parent.name


def main_cluster(ids: set[int]) -> int:
    return min(ids - {-1})


def clusters_by_person(root: Path) -> dict[str, set[int]]:
    faces = read_faces(root, embeddings=False)
    labels = cluster_store.load(root).lookup(faces.face_ids)
    out: dict[str, set[int]] = {}
    for path, face, label in zip(faces.paths, faces.faces, labels, strict=True):
        if face == 0:  # the largest face is the person of the folder
            out.setdefault(person_of(path), set()).add(int(label))
    return out


def test_cluster_then_update_keeps_ids_and_names(index, model):
    first = people.cluster_index(index)
    assert first["clusters"] >= 8 and first["faces"] >= 24
    before = clusters_by_person(index)
    assert sum(len(ids - {-1}) == 1 for ids in before.values()) >= 7  # nearly every person is one cluster
    sheldon = main_cluster(before["sheldon"])
    people.name(index, sheldon, "Sheldon Cooper")

    add_shard(index, model, sorted(need(BBT).glob("*/*[45].png")))
    second = people.cluster_index(index)
    assert second["new_faces"] >= 16 and second["joined"] >= 12
    after = clusters_by_person(index)
    for person, ids in before.items():  # nobody renumbered: old faces keep their cluster ids
        assert ids - {-1} <= after[person]
    assert sheldon in after["sheldon"] and len(after["sheldon"] - {-1}) == 1
    assert cluster_store.load(index).names == {sheldon: "Sheldon Cooper"}
    again = people.cluster_index(index)  # nothing new: nothing changes
    assert again["list"] == second["list"] and again["new_faces"] == 0


def test_merge_split_and_fresh_keep_names(index):
    people.cluster_index(index)
    ids = clusters_by_person(index)
    amy, raj = main_cluster(ids["amy"]), main_cluster(ids["raj"])
    people.name(index, raj, "Raj")
    merged = people.merge(index, [amy, raj])
    assert merged["id"] == amy and merged["name"] == "Raj"
    table = cluster_store.load(index)
    raj_faces = table.face_ids[table.clusters == amy][-2:].tolist()
    parts = people.split(index, amy, raj_faces)
    assert parts[0]["id"] == amy and parts[1]["faces"] == 2 and parts[1]["id"] >= table.next_id
    people.cluster_index(index, fresh=True)  # re-clustering from scratch keeps named clusters as they are
    after = cluster_store.load(index)
    assert after.names == {amy: "Raj"}
    kept = set(table.face_ids[table.clusters == amy].tolist()) - set(raj_faces)
    assert set(after.face_ids[after.clusters == amy].tolist()) == kept
    with pytest.raises(FacetwinError, match="no cluster 9999"):
        people.name(index, 9999, "Nobody")
    with pytest.raises(FacetwinError, match="no cluster -1"):  # noise is not a cluster
        people.name(index, -1, "Nobody")


def test_export_named_clusters_to_gallery(index, tmp_path):
    from facetwin.gallery import Gallery

    people.cluster_index(index)
    ids = clusters_by_person(index)
    people.name(index, main_cluster(ids["penny"]), "Penny")
    gallery = tmp_path / "g.db"
    first = people.export_gallery(index, gallery)
    assert first["people"] == 1 and first["enrolled"] >= 2
    assert people.export_gallery(index, gallery)["enrolled"] == 0  # a second export adds nothing
    hit = Gallery(gallery).identify(str(BBT / "penny" / "penny5.png"))
    assert hit.person == "Penny"


def test_cli_cluster_name_and_errors(index):
    run = lambda *a: subprocess.run([sys.executable, "-m", "facetwin.cli", "cluster", *a],  # noqa: E731
                                    capture_output=True, text=True)
    out = run(str(index), "--min-faces", "2")
    assert out.returncode == 0, out.stderr
    assert "clusters" in out.stdout and "noise" in out.stdout
    table = cluster_store.load(index)
    biggest = next(iter(table.sizes()))
    out = run("name", str(index), str(biggest), "Leonard Hofstadter")
    assert out.returncode == 0 and "Leonard Hofstadter" in out.stdout
    assert cluster_store.load(index).names[biggest] == "Leonard Hofstadter"
    bad = run(str(index.parent / "missing"))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "manifest.json" in bad.stderr
    assert np.all(cluster_store.load(index).clusters >= -1)
