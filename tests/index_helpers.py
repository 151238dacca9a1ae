"""Real indexes of real photos and crafted copies of them, for the index, collection, storage and cluster tests."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import stat
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from conftest import DATA, need

EXAMPLES = DATA / "face_recognition_examples"
PROBE = EXAMPLES / "obama" / "obama.jpg"


def photo_copy(root: Path) -> Path:
    """The face_recognition examples (5 people, 13 photos, one face each) copied to ``root/photos``."""
    folder = root / "photos"
    shutil.copytree(need(EXAMPLES), folder, ignore=shutil.ignore_patterns("*.tsv", "*.txt", "*.md"))
    return folder


def build(root: Path, photos: Path, shard_photos: int = 5) -> Path:
    """A real index of ``photos`` (three shards), clustered, with its ANN file: every file an index can have."""
    import facetwin
    from facetwin.collection import people

    out = root / "index"
    facetwin.index([photos], out, engine="local", progress=False, shard_photos=shard_photos)
    people.cluster_index(out)
    facetwin.find(PROBE, out)
    return out


def cli(*args) -> tuple[int, str, str]:
    """``facetwin ARGS`` run in this process: exit status, stdout, stderr (an exception other than the CLI's own
    handling propagates: that is a traceback)."""
    from facetwin.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every file below ``root``: SHA-256 and mode (to prove that nothing saved was changed)."""
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), stat.S_IMODE(p.stat().st_mode))
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def shard(index: Path, number: int = 0) -> Path:
    return index / "shards" / f"shard-{number:06d}.parquet"


def read_shard(path: Path) -> tuple[pa.Table, dict[bytes, bytes]]:
    table = pq.read_table(path)
    return table.replace_schema_metadata(None), dict(table.schema.metadata or {})


def write_shard(path: Path, table: pa.Table, metadata: dict[bytes, bytes]) -> None:
    pq.write_table(table.replace_schema_metadata(metadata), path)


def replace_column(table: pa.Table, name: str, array) -> pa.Table:
    return table.set_column(table.column_names.index(name), name, array)


def photos_file(index: Path, number: int = 0) -> Path:
    return index / "photos" / f"photos-{number:06d}.parquet"


def edit_photos(index: Path, edit, number: int = 0, *, manifest: bool = True) -> None:
    """Rewrite shard ``number``'s photos table with ``edit(rows)`` applied to its rows (a list of dicts), and (with
    ``manifest``) the manifest's first and last path of that shard to match, as a careful forger would."""
    path = photos_file(index, number)
    table = pq.read_table(path)
    rows = table.to_pylist()
    edit(rows)
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)
    if not manifest:
        return

    def paths_of(doc):
        entry = doc["shards"][number]
        entry["lo"], entry["hi"] = min(r["path"] for r in rows), max(r["path"] for r in rows)

    edit_manifest(index, paths_of)


def edit_manifest(index: Path, edit) -> None:
    path = index / "manifest.json"
    doc = json.loads(path.read_text())
    doc = edit(doc) or doc
    path.write_text(json.dumps(doc))


def modes(root: Path) -> dict[str, int]:
    """Mode bits of ``root`` and everything below it."""
    return {str(p.relative_to(root.parent)): stat.S_IMODE(os.stat(p).st_mode) for p in [root, *root.rglob("*")]}


def format_1(index: Path) -> Path:
    """Turn a format 2 index into what the release before wrote (format 1): each shard with an absolute ``path``
    column and its photos as JSON in its footer, no photos tables, a manifest of absolute folders, the HNSW file
    of its ``find``. Returns ``index``."""
    doc = json.loads((index / "manifest.json").read_text())
    root = doc["root"]
    absolute = lambda rel: os.path.normpath(os.path.join(root, rel))  # noqa: E731
    for entry in doc["shards"]:
        shard_path = index / "shards" / entry["name"]
        photos_path = index / "photos" / entry["name"].replace("shard-", "photos-")
        photos = pq.read_table(photos_path).to_pylist()
        prefix = entry.get("prefix", ".")
        footer = [{"path": absolute(os.path.join(prefix, p["path"])), "sha256": p["sha256"], "size": p["size"],
                   "mtime_ns": p["mtime_ns"], "width": p["width"], "height": p["height"], "faces": p["faces"],
                   "face_id": p["face_id"], "error": p["error"] or None} for p in photos]
        table, meta = read_shard(shard_path)
        paths = [p["path"] for p in footer for _ in range(p["faces"])]
        table = table.add_column(1, "path", pa.array(paths, pa.string()))
        meta[b"facetwin.photos"] = json.dumps(footer).encode()
        write_shard(shard_path, table, meta)
    shutil.rmtree(index / "photos")
    shutil.rmtree(index / "ann", ignore_errors=True)
    (index / "faces.hnsw").write_bytes(b"an HNSW file of the release before")
    old = {"format": "facetwin-index/1", "created": doc["created"], "model": doc["model"], "counts": doc["counts"],
           "next_face_id": doc["next_face_id"], "shards": [e["name"] for e in doc["shards"]],
           "errors": [{"path": absolute(e["path"]), "reason": e["reason"]} for e in doc["errors"]],
           "runs": doc.get("runs", []), "roots": [absolute(r) for r in doc["roots"]],
           "photo_roots": [absolute(r) for r in doc["photo_roots"]]}
    (index / "manifest.json").write_text(json.dumps(old, indent=1))
    return index
