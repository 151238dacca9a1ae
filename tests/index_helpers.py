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


def edit_footer(path: Path, edit) -> None:
    """Rewrite a shard with ``edit(photos)`` applied to its footer's photo list."""
    table, meta = read_shard(path)
    photos = json.loads(meta[b"facetwin.photos"])
    edit(photos)
    meta[b"facetwin.photos"] = json.dumps(photos).encode()
    write_shard(path, table, meta)


def edit_manifest(index: Path, edit) -> None:
    path = index / "manifest.json"
    doc = json.loads(path.read_text())
    doc = edit(doc) or doc
    path.write_text(json.dumps(doc))


def modes(root: Path) -> dict[str, int]:
    """Mode bits of ``root`` and everything below it."""
    return {str(p.relative_to(root.parent)): stat.S_IMODE(os.stat(p).st_mode) for p in [root, *root.rglob("*")]}
