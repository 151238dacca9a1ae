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
    edit_manifest,
    edit_photos,
    photo_copy,
    photos_file,
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
    """Shard 1 claims the face ids of shard 0 (its footer, rows and photos table agree with each other)."""
    path = shard(index, 1)
    table, meta = read_shard(path)
    table = replace_column(table, "face_id", pa.array(np.arange(table.num_rows), pa.int64()))
    meta[b"facetwin.first_face_id"] = b"0"
    write_shard(path, table, meta)

    def renumber(rows):
        start = 0
        for row in rows:
            row["face_id"], start = start, start + row["faces"]

    edit_photos(index, renumber, 1)


def _path(index, path):
    """The first photo of shard 0 renamed ``path`` in its photos table (the manifest left as it was)."""
    edit_photos(index, lambda rows: rows[0].update(path=path), manifest=False)


def _drop_column(name):
    def drop(index):
        path = photos_file(index)
        pq.write_table(pq.read_table(path).drop_columns([name]), path)
    return drop


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
PHOTOS = "photos-000000.parquet"
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
    "photos without digests": (_drop_column("sha256"), PHOTOS),
    "photo path absolute": (lambda i: _path(i, "/etc/x.jpg"), PHOTOS),
    "photo path with ..": (lambda i: _path(i, "../../etc/x.jpg"), PHOTOS),
    "photo path inside ..": (lambda i: _path(i, "a/../../x.jpg"), PHOTOS),
    "photo path in the manifest outside": (lambda i: edit_photos(i, lambda rows: rows[0].update(path="../x.jpg")),
                                           INDEX_FILE),
    "photo twice": (lambda i: edit_photos(i, lambda rows: rows[1].update(path=rows[0]["path"])), PHOTOS),
    "photo faces off": (lambda i: edit_photos(i, lambda rows: rows[0].update(faces=rows[0]["faces"] + 1)), PHOTOS),
    "photo digest not a digest": (lambda i: edit_photos(i, lambda rows: rows[0].update(sha256="\x1b[2J" * 9)),
                                  PHOTOS),
    "photos table gone": (lambda i: photos_file(i).unlink(), PHOTOS),
    "photos table garbage": (lambda i: photos_file(i).write_bytes(b"PAR1 not really"), PHOTOS),
    "manifest shard out of order": (
        lambda i: edit_manifest(i, lambda d: d["shards"].reverse()), INDEX_FILE),
    "manifest shard with a prefix outside": (
        lambda i: edit_manifest(i, lambda d: d["shards"][0].update(prefix="../..")), INDEX_FILE),
    "manifest faces do not add up": (lambda i: edit_manifest(i, lambda d: d.update(next_face_id=5)), INDEX_FILE),
    "manifest retired outside the ids": (lambda i: edit_manifest(i, lambda d: d.update(retired=[[10, 99]])),
                                         INDEX_FILE),
    "manifest root relative": (lambda i: edit_manifest(i, lambda d: d.update(root="photos")), INDEX_FILE),
    "manifest count not a number": (lambda i: edit_manifest(i, lambda d: d["counts"].update(photos="13")),
                                    INDEX_FILE),
    "duplicate face ids": (_duplicate_ids, "-000001.parquet"),  # its photos table or the shard
    "shard gone": (lambda i: shard(i, 2).unlink(), "shard-000002.parquet"),
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


def _stored_vectors(ann) -> np.ndarray:
    """The vectors a FAISS flat or HNSW index holds, as a writable view."""
    import faiss

    storage = faiss.downcast_index(ann.storage) if hasattr(ann, "storage") else ann
    codes = faiss.rev_swig_ptr(storage.codes.data(), ann.ntotal * ann.d * 4)
    return codes.view(np.float32).reshape(ann.ntotal, ann.d)


def test_a_crafted_ann_file_is_rebuilt_not_trusted(index):
    """The ANN segment with the right size and structure, but an Obama face's vector swapped with a Biden face's:
    trusted, find would miss a photo of Obama (distances are recomputed from the shards, so Biden's would not show).
    The same file copied from another index (with its state) is not trusted either."""
    import faiss

    from facetwin.collection.index_faces import read_faces

    good = cli("find", PROBE, "--index", index, "--json")
    assert good[0] == 0
    faces = read_faces(index, embeddings=False)
    person = [path.split("/")[-2] for path in faces.paths]
    i = next(r for r, p in enumerate(person) if p == "obama")
    j = next(r for r, p in enumerate(person) if p == "biden")
    (segment,) = json.loads((index / "ann" / "state.json").read_text())["segments"]
    path = index / "ann" / segment["file"]
    ann = faiss.read_index(str(path))
    rows = _stored_vectors(ann)
    rows[[i, j]] = rows[[j, i]]
    faiss.write_index(ann, str(path))
    again = cli("find", PROBE, "--index", index, "--json")
    assert again[0] == 0 and json.loads(again[1])["hits"] == json.loads(good[1])["hits"]
    rebuilt = json.loads((index / "ann" / "state.json").read_text())["segments"]
    assert [s["file"] for s in rebuilt] != [segment["file"]] and not path.exists()


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


KINDS = ["manifest", "footer", "photos", "photo bytes", "shard bytes", "shard values", "ann", "rows", "clusters",
         "graph"]


def _damage(index, rng) -> str:
    """One random damage; a file an earlier damage made unreadable gets its bytes flipped instead."""
    kind = KINDS[int(rng.integers(0, len(KINDS)))]
    number = int(rng.integers(0, 3))
    target = shard(index, number)
    try:
        _damage_one(index, rng, kind, target, number)
    except (pa.ArrowException, OSError, ValueError, KeyError, TypeError, OverflowError):
        _flip_bytes(target, rng)
    return kind


def _damage_one(index, rng, kind, target, number) -> None:
    if kind == "manifest":
        path = index / "manifest.json"
        path.write_text(json.dumps(_mutate(json.loads(path.read_text()), rng)))
    elif kind == "footer":
        table, meta = read_shard(target)
        key = [b"facetwin.first_face_id", b"facetwin.model_fingerprint"][int(rng.integers(0, 2))]
        meta[key] = json.dumps(_mutate({"v": 0}, rng)).encode()
        write_shard(target, table, meta)
    elif kind == "photos":
        path = photos_file(index, number)
        rows = pq.read_table(path).to_pylist()
        rows = _mutate(rows, rng)
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif kind == "photo bytes":
        _flip_bytes(photos_file(index, number), rng)
    elif kind == "ann":
        files = sorted((index / "ann").iterdir())
        _flip_bytes(files[int(rng.integers(0, len(files)))], rng)
    elif kind == "rows":
        files = sorted((index / "rows").iterdir())
        _flip_bytes(files[int(rng.integers(0, len(files)))], rng)
    elif kind == "graph":
        _flip_bytes(next((index / "graph").glob("graph-*.parquet")), rng)
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
        _flip_bytes(target, rng)


def test_fuzz_crafted_indexes(pristine, tmp_path, sface):
    """Random damage to manifest, footers, shards, ANN, rows and clusters files: find, cluster, gallery import and the
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
