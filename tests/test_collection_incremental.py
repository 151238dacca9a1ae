"""Every step incremental: clustering new faces from their own neighbours (as good as a fresh run, reading only the
new shards), ``find`` correct while another process indexes, and kill -9 in the middle of an ANN extension or a
clustering run leaving the old state."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from index_helpers import PROBE, cli, photo_copy, snapshot

SRC = Path(__file__).resolve().parents[1] / "src"
BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "index_scale.py"
SPREAD = 1.05  # faces of one person about 0.5 apart, near sface's merge distance: fresh BCubed F1 about 0.99


def _benchmark():
    """``benchmarks/index_scale.py``: its synthetic archive (planted people) is the one measured at 1 M and 10 M."""
    spec = importlib.util.spec_from_file_location("index_scale", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}


def test_incremental_clusters_match_a_fresh_run_and_read_only_new_shards(tmp_path, model, monkeypatch):
    from facetwin.collection import cluster_store, people
    from facetwin.collection.find import Finder
    from facetwin.collection.shards import IndexStore
    from facetwin.evaluation.clustering import bcubed

    scale = _benchmark()
    index, first, step = tmp_path / "index", 6000, 300
    labels, count = scale.planted(first + 2 * step, seed=3)
    faces = scale.faces_of(labels, count, 0, seed=3, spread=SPREAD)
    scale.commit_faces(index, model, faces[:first], 0, shard_photos=1000)
    assert people.cluster_index(index)["mode"] == "full"
    Finder(index, model).load()  # the ANN, built once by the first search
    table = cluster_store.load(index)
    named = int(np.bincount(table.clusters[table.clusters >= 0]).argmax())
    people.name(index, named, "Ada Lovelace")
    members = set(table.face_ids[table.clusters == named].tolist())
    read: list[str] = []
    real = IndexStore.shard_table
    monkeypatch.setattr(IndexStore, "shard_table", lambda self, shard, *a: read.append(shard.name) or
                        real(self, shard, *a))
    for start in (first, first + step):
        scale.commit_faces(index, model, faces[start : start + step], start, shard_photos=100)
        read.clear()
        result = people.cluster_index(index)
        assert result["mode"] == "incremental" and result["new_faces"] == step and result["joined"] > step // 3
        assert set(read) == {f"shard-{n:06d}.parquet" for n in range(len(IndexStore(index).shards) - 3,
                                                                      len(IndexStore(index).shards))}
    table = cluster_store.load(index)
    assert members <= set(table.face_ids[table.clusters == named].tolist())  # a named cluster keeps its faces
    assert table.names == {named: "Ada Lovelace"}
    incremental = bcubed(table.clusters, labels[table.face_ids])["f1"]
    monkeypatch.undo()
    people.cluster_index(index, fresh=True)
    fresh_table = cluster_store.load(index)
    fresh = bcubed(fresh_table.clusters, labels[fresh_table.face_ids])["f1"]
    print(f"BCubed F1: incremental {incremental:.4f}, fresh {fresh:.4f}")
    assert 0.97 < fresh < 1 and abs(incremental - fresh) <= 0.005


def test_find_is_correct_while_another_process_indexes(tmp_path):
    from facetwin.collection.find import Finder

    photos = photo_copy(tmp_path)
    index = tmp_path / "index"
    command = [sys.executable, "-m", "facetwin.cli", "index", str(photos), "--out", str(index), "--engine", "local",
               "--shard-photos", "1", "--quiet"]
    first = subprocess.run(command[:4] + [str(photos / "biden"), *command[5:]], env=_env(), capture_output=True)
    assert first.returncode == 0, first.stderr
    writer = subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    finder, seen = Finder(index), []
    while writer.poll() is None:
        hits = finder.find(PROBE).hits
        seen.append(len(hits))
        assert {Path(h.path).parent.name for h in hits} <= {"obama"} and len({h.path for h in hits}) == len(hits)
        time.sleep(0.05)
    assert writer.wait() == 0, writer.stderr.read()
    final = finder.find(PROBE).hits
    assert len(final) == 4 and max(seen) <= 4 and len(set(seen)) > 1, seen  # it saw the index grow


_KILLED_AT = """
import os, signal, sys
from facetwin.core import paths
write = paths.atomic_write
def killed(path, *args, **kwargs):
    if {when}:
        os.kill(os.getpid(), signal.SIGKILL)
    return write(path, *args, **kwargs)
paths.atomic_write = killed
from facetwin.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _killed(when: str, *args) -> None:
    done = subprocess.run([sys.executable, "-c", _KILLED_AT.format(when=when), *map(str, args)], env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]


@pytest.fixture
def grown(tmp_path):
    """An index of two people (searched and clustered), then two more people indexed."""
    photos = photo_copy(tmp_path)
    index = tmp_path / "index"
    for folder in ("obama", "biden"):
        assert cli("index", photos / folder, "--out", index, "--shard-photos", "2")[0] == 0
    assert cli("find", PROBE, "--index", index)[0] == 0 and cli("cluster", index)[0] == 0
    for folder in ("kit_harington", "rose_leslie"):
        assert cli("index", photos / folder, "--out", index, "--shard-photos", "2")[0] == 0
    return index


def test_kill_9_while_the_ann_is_extended_leaves_the_old_ann(grown):
    state = grown / "ann" / "state.json"
    before = {p.name: p.read_bytes() for p in (grown / "ann").iterdir()}
    _killed("str(path).endswith('.faiss')", "find", PROBE, "--index", grown)  # the new segment half written
    assert {p.name: p.read_bytes() for p in (grown / "ann").iterdir()} == before
    _killed("str(path).endswith('state.json')", "find", PROBE, "--index", grown)  # segment written, state not
    assert state.read_bytes() == before["state.json"]
    code, out, _ = cli("find", PROBE, "--index", grown, "--json")
    assert code == 0 and len(json.loads(out)["hits"]) == 4
    segments = json.loads(state.read_text())["segments"]
    assert sorted(p.name for p in (grown / "ann").glob("*.faiss")) == sorted(s["file"] for s in segments)


def test_kill_9_during_a_clustering_run_leaves_the_old_table(grown):
    before = snapshot(grown)
    _killed("str(path).endswith('clusters.parquet')", "cluster", grown)  # its graph file written, the table not
    after = snapshot(grown)
    assert after["clusters.parquet"] == before["clusters.parquet"]
    assert len([name for name in after if name.startswith("graph/")]) == 2  # one of them named by no table
    code, out, _ = cli("cluster", grown, "--json")
    summary = json.loads(out)
    assert code == 0 and summary["mode"] == "incremental" and summary["new_faces"] == 5
    assert len(list((grown / "graph").iterdir())) == 2  # the old run's and this one's
