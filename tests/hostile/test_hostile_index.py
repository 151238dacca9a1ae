"""Crafted and damaged indexes (issue 27, item 6): every command that reads an index (``find``, ``cluster``,
``gallery import``, ``serve --index``) answers a damaged one with exit 2 and one sentence naming the file, never a
traceback and never a silently wrong answer, and changes nothing on disk. Then a time-bounded fuzz run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from index_helpers import (
    PROBE,
    build,
    cli,
    edit_footer,
    edit_manifest,
    photo_copy,
    read_shard,
    replace_column,
    shard,
    snapshot,
    write_shard,
)

from facetwin.errors import FacetwinError

from conftest import free_port

FUZZ_SECONDS = 15
SEED = 20261206


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("pristine")
    return build(root, photo_copy(root))


@pytest.fixture
def index(pristine, tmp_path):
    return shutil.copytree(pristine, tmp_path / "index")


@pytest.fixture(scope="module")
def sface():
    import facetwin

    return facetwin.load("sface")


def _column(index, column, make):
    path = shard(index)
    table, meta = read_shard(path)
    write_shard(path, make(table, column), meta)


def _values(table, column):
    array = table[column].combine_chunks()
    return array.flatten().to_numpy().copy(), array.type.list_size


def _fixed(values, width):
    return pa.FixedSizeListArray.from_arrays(pa.array(values, pa.float32()), width)


def _nan_embedding(table, column):
    values, width = _values(table, column)
    values[5] = np.nan
    return replace_column(table, column, _fixed(values, width))


def _box(value):
    def make(table, column):
        values, width = _values(table, column)
        values[0] = value
        return replace_column(table, column, _fixed(values, width))
    return make


def _ragged(table, column):
    values, width = _values(table, column)
    rows = [list(values[i * width : (i + 1) * width]) for i in range(table.num_rows)]
    rows[0] = rows[0][:-3]
    return replace_column(table, column, pa.array(rows, pa.list_(pa.float32())))


def _three_numbers(table, column):
    values, _ = _values(table, column)
    return replace_column(table, column, _fixed(values.reshape(-1, 4)[:, :3].reshape(-1), 3))


def _duplicate_ids(index):
    """Shard 1 claims the face ids of shard 0 (footer and rows agree with each other)."""
    path = shard(index, 1)
    table, meta = read_shard(path)
    table = replace_column(table, "face_id", pa.array(np.arange(table.num_rows), pa.int64()))
    photos = json.loads(meta[b"facetwin.photos"])
    start = 0
    for photo in photos:
        photo["face_id"], start = start, start + photo["faces"]
    meta.update({b"facetwin.photos": json.dumps(photos).encode(), b"facetwin.first_face_id": b"0"})
    write_shard(path, table, meta)


def _clusters(index, edit):
    path = index / "clusters.parquet"
    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[b"facetwin.clusters"])
    table = edit(table.replace_schema_metadata(None), meta)
    pq.write_table(table.replace_schema_metadata({b"facetwin.clusters": json.dumps(meta).encode()}), path)


def _bad_name(table, meta):
    meta["names"] = {str(int(table["cluster"].to_numpy().max())): "\x1b]0;owned\x07\u202eevil"}
    return table


def _text_ids(table, meta):
    return table.set_column(1, "cluster", pa.array([str(v) for v in table["cluster"].to_pylist()]))


INDEX_FILE = "manifest.json"
SHARD = "shard-000000.parquet"
CASES = {
    "manifest is a list": (lambda i: (i / "manifest.json").write_text("[1, 2]"), INDEX_FILE),
    "model is a string": (lambda i: edit_manifest(i, lambda d: d.update(model="sface")), INDEX_FILE),
    "embedding_dim not a number": (lambda i: edit_manifest(i, lambda d: d["model"].update(embedding_dim="128x")),
                                   INDEX_FILE),
    "embedding_dim wrong": (lambda i: edit_manifest(i, lambda d: d["model"].update(embedding_dim=64)), SHARD),
    "roots not a list": (lambda i: edit_manifest(i, lambda d: d.update(roots="/")), INDEX_FILE),
    "model differs from the shards": (
        lambda i: edit_manifest(i, lambda d: d["model"].update(fingerprint="0" * 64)), SHARD),
    "ragged embeddings": (lambda i: _column(i, "embedding", _ragged), SHARD),
    "no embedding column": (lambda i: _column(i, "embedding", lambda t, c: t.drop_columns([c])), SHARD),
    "NaN embedding": (lambda i: _column(i, "embedding", _nan_embedding), SHARD),
    "three-number box": (lambda i: _column(i, "box", _three_numbers), SHARD),
    "NaN box": (lambda i: _column(i, "box", _box(np.nan)), SHARD),
    "1e30 box": (lambda i: _column(i, "box", _box(1e30)), SHARD),
    "footer photos without keys": (lambda i: edit_footer(shard(i), lambda ps: ps[0].pop("sha256")), SHARD),
    "footer path relative": (lambda i: edit_footer(shard(i), lambda ps: ps[0].update(path="obama/obama.jpg")), SHARD),
    "footer path with ..": (lambda i: edit_footer(shard(i), lambda ps: ps[0].update(path="/tmp/../etc/x.jpg")),
                            SHARD),
    "duplicate face ids": (_duplicate_ids, "shard-000001.parquet"),
    "cluster name with escapes": (lambda i: _clusters(i, _bad_name), "clusters.parquet"),
    "cluster ids as text": (lambda i: _clusters(i, _text_ids), "clusters.parquet"),
}


def _refusal(done: tuple[int, str, str], file: str) -> str:
    code, out, err = done
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("facetwin: error: ") and file in lines[0], err
    return lines[0].removeprefix("facetwin: error: ")


@pytest.mark.parametrize("case", list(CASES))
def test_a_crafted_index_is_one_sentence_everywhere_and_changes_nothing(index, tmp_path, sface, case):
    from facetwin.service import create_app

    damage, file = CASES[case]
    damage(index)
    before = snapshot(index)
    gallery = tmp_path / "people.db"
    clusters_only = file == "clusters.parquet"
    sentence = _refusal(cli("cluster", index), file)
    if clusters_only:
        assert _refusal(cli("cluster", "list", index), file) == sentence
        assert cli("find", PROBE, "--index", index)[0] == 0  # find and import do not read the clusters
    else:
        assert _refusal(cli("find", PROBE, "--index", index), file) == sentence
        assert _refusal(cli("gallery", "import", index, "--gallery", gallery), file) == sentence
        assert not gallery.exists()  # nothing was enrolled, no empty gallery left behind
    with pytest.raises(FacetwinError) as refused:
        create_app(sface, index_path=index, workers_mode="lock")  # serve --index does not start
    assert str(refused.value) == sentence
    assert snapshot(index) == before


def test_serve_refuses_a_crafted_index_before_serving(index, tmp_path):
    CASES["NaN box"][0](index)
    done = subprocess.run(
        [sys.executable, "-m", "facetwin.cli", "serve", "--index", str(index), "--port", str(free_port()),
         "--gallery", str(tmp_path / "g.db")], capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2 and "serving" not in done.stdout, done.stdout + done.stderr
    line = _refusal((done.returncode, done.stdout, done.stderr), SHARD)
    assert "box" in line and "Traceback" not in done.stderr


def test_a_crafted_ann_file_is_rebuilt_not_trusted(index):
    """faces.hnsw with the right size, graph and first, middle and last vectors, but an Obama face's vector swapped
    with a Biden face's: trusted, find would show a photo of Biden for Obama and miss one of Obama."""
    import faiss

    from facetwin.collection.index_faces import read_faces

    good = cli("find", PROBE, "--index", index, "--json")
    assert good[0] == 0
    faces = read_faces(index, embeddings=False)
    sampled = {0, len(faces) // 2, len(faces) - 1}
    person = [path.split("/")[-2] for path in faces.paths]
    i = next(r for r, p in enumerate(person) if p == "obama" and r not in sampled)
    j = next(r for r, p in enumerate(person) if p == "biden" and r not in sampled)
    ann = index / "faces.hnsw"
    graph = faiss.read_index(str(ann))
    codes = faiss.rev_swig_ptr(faiss.downcast_index(graph.storage).codes.data(), graph.ntotal * graph.d * 4)
    rows = codes.view(np.float32).reshape(graph.ntotal, graph.d)
    rows[[i, j]] = rows[[j, i]]
    faiss.write_index(graph, str(ann))
    again = cli("find", PROBE, "--index", index, "--json")
    assert again[0] == 0 and json.loads(again[1])["hits"] == json.loads(good[1])["hits"]


# ---------------------------------------------------------------------------------------------------- fuzz


def _flip_bytes(path, rng):
    data = bytearray(path.read_bytes())
    for position in rng.integers(0, len(data), size=int(rng.integers(1, 12))):
        data[position] = int(rng.integers(0, 256))
    path.write_bytes(bytes(data))


ODD = [None, True, -1, 0, 2**70, 1.5, float("nan"), "", "x" * 300, [], {}, [1, "a"], {"a": 1}, "../../etc", "\x00"]


def _mutate(doc, rng):
    """One random value somewhere in a JSON document replaced by an odd one (or a key removed)."""
    parent, key, node = None, None, doc
    while isinstance(node, dict | list) and node and (parent is None or rng.random() >= 0.3):
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        parent, key = node, keys[int(rng.integers(0, len(keys)))]
        node = parent[key]
    odd = ODD[int(rng.integers(0, len(ODD)))]
    if parent is None:
        return odd
    if isinstance(parent, dict) and rng.random() < 0.2:
        parent.pop(key)
    else:
        parent[key] = odd
    return doc


def _damage(index, rng) -> str:
    """One random damage; a file an earlier damage made unreadable gets its bytes flipped instead."""
    kind = ["manifest", "footer", "shard bytes", "shard values", "ann", "clusters"][int(rng.integers(0, 6))]
    target = shard(index, int(rng.integers(0, 3)))
    try:
        _damage_one(index, rng, kind, target)
    except (pa.ArrowException, OSError, ValueError, KeyError, TypeError):
        _flip_bytes(target, rng)
    return kind


def _damage_one(index, rng, kind, target) -> None:
    if kind == "manifest":
        path = index / "manifest.json"
        path.write_text(json.dumps(_mutate(json.loads(path.read_text()), rng)))
    elif kind == "footer":
        table, meta = read_shard(target)
        key = [b"facetwin.photos", b"facetwin.first_face_id", b"facetwin.model_fingerprint"][int(rng.integers(0, 3))]
        meta[key] = json.dumps(_mutate(json.loads(meta[key]) if key == b"facetwin.photos" else {"v": 0}, rng)).encode()
        write_shard(target, table, meta)
    elif kind == "shard values":
        table, meta = read_shard(target)
        column = ["box", "landmarks", "embedding", "score"][int(rng.integers(0, 4))]
        if column == "score":
            values = table[column].to_numpy().copy()
            values[int(rng.integers(0, len(values)))] = [np.nan, np.inf, -1e38][int(rng.integers(0, 3))]
            array = pa.array(values, pa.float32())
        else:
            values, width = _values(table, column)
            values[int(rng.integers(0, len(values)))] = [np.nan, np.inf, 3e38, -0.0][int(rng.integers(0, 4))]
            array = _fixed(values, width)
        write_shard(target, replace_column(table, column, array), meta)
    elif kind == "clusters":
        if rng.random() < 0.5:
            _flip_bytes(index / "clusters.parquet", rng)
        else:
            _clusters(index, lambda t, m: (m.update(_mutate(dict(m), rng)) if rng.random() < 0.7 else None) or t)
    else:
        _flip_bytes(target if kind == "shard bytes" else index / "faces.hnsw", rng)


def test_fuzz_crafted_indexes(pristine, tmp_path, sface):
    """Random damage to manifest, footers, shards, ANN and clusters files: find, cluster, gallery import and the
    server's start-up give an answer (0) or one sentence (2), never a traceback or any other status."""
    from facetwin.service import create_app

    rng = np.random.default_rng(SEED)
    end, cases, refused = time.monotonic() + FUZZ_SECONDS, 0, 0
    while time.monotonic() < end:
        index = shutil.copytree(pristine, tmp_path / f"case{cases}")
        kinds = [_damage(index, rng) for _ in range(int(rng.integers(1, 3)))]
        for args in (("find", PROBE, "--index", index), ("cluster", index),
                     ("gallery", "import", index, "--gallery", tmp_path / f"g{cases}.db")):
            try:
                code, _, err = cli(*args)
            except Exception as exc:  # noqa: BLE001 - the point of the test
                pytest.fail(f"case {cases} ({kinds}, seed {SEED}): {args[0]}: {type(exc).__name__}: {exc}")
            assert code in (0, 2), (cases, kinds, args[0], code, err)
            assert code == 0 or len(err.strip().splitlines()) == 1, (cases, kinds, err)
            refused += code == 2
        try:
            create_app(sface, index_path=index, workers_mode="lock")
        except FacetwinError as exc:
            assert "\n" not in str(exc)
        except Exception as exc:  # noqa: BLE001
            pytest.fail(f"case {cases} ({kinds}, seed {SEED}): serve: {type(exc).__name__}: {exc}")
        shutil.rmtree(index)
        cases += 1
    assert cases >= 10 and refused, (cases, refused)
    print(f"{cases} damaged indexes, {refused} commands refused in one sentence")
