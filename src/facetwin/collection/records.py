"""What the index's files hold (format 2), read and written by :class:`facetwin.collection.shards.IndexStore`:

- ``shards/shard-NNNNNN.parquet``: one row per face (``face_id``, ``sha256``, ``face``, ``box`` x/y/w/h,
  ``landmarks`` 5×(x, y), ``score``, ``embedding``); its footer names its first face id and its model.
- ``photos/photos-NNNNNN.parquet``: one row per photo of that shard, faces or not, in the order of their faces:
  ``path`` (below the archive root, :mod:`facetwin.collection.archive`), ``sha256``, ``size``, ``mtime_ns``,
  ``width``, ``height``, ``faces``, ``face_id`` (its first), ``photo_id``, ``error`` (why it could not be read).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from facetwin.collection import index_check as check
from facetwin.collection.index_check import FINGERPRINT_KEY, FIRST_KEY

PHOTO_FIELDS = ("path", "sha256", "size", "mtime_ns", "width", "height", "faces", "face_id", "error")
PHOTO_SCHEMA = check.photo_schema()  # the columns of a photos table


def schema(dim: int) -> pa.Schema:
    """The columns of a shard of faces."""
    return pa.schema([
        ("face_id", pa.int64()), ("sha256", pa.string()), ("face", pa.int32()), ("box", pa.list_(pa.float32(), 4)),
        ("landmarks", pa.list_(pa.float32(), 10)), ("score", pa.float32()), ("embedding", pa.list_(pa.float32(), dim)),
    ])


@dataclass(frozen=True)
class Shard:
    """A committed shard as the manifest records it."""

    number: int
    first: int  # its first face id
    faces: int
    photos: int
    lo: str  # the first and last of its photos' paths (as its photos table holds them), in sorted order
    hi: str
    prefix: str = "."  # the folder below the archive root that its photos table's paths start from

    @property
    def name(self) -> str:
        return f"shard-{self.number:06d}.parquet"

    @property
    def photos_name(self) -> str:
        return f"photos-{self.number:06d}.parquet"

    @property
    def end(self) -> int:
        return self.first + self.faces

    def entry(self) -> dict:
        """The shard as the manifest records it (the prefix only when it has one)."""
        entry = {"name": self.name, "first": self.first, "faces": self.faces, "photos": self.photos, "lo": self.lo,
                 "hi": self.hi}
        return entry if self.prefix == "." else {**entry, "prefix": self.prefix}

    def below(self, path: str) -> str:
        """A path of its photos table as a path below the archive root."""
        return path if self.prefix == "." else posixpath.join(self.prefix, path)

    @classmethod
    def of(cls, entry: dict) -> Shard:
        return cls(int(entry["name"][6:-8]), entry["first"], entry["faces"], entry["photos"], entry["lo"], entry["hi"],
                   entry.get("prefix", "."))


@dataclass
class Photo:
    """A photo complete with all its faces, ready to be committed."""

    info: dict  # PHOTO_FIELDS (path below the archive root)
    faces: list[dict] = field(default_factory=list)  # face, box, landmarks, score, embedding
    replaces: dict | None = None  # the version of this path indexed before (its faces are retired)


def faces_table(photos: list[Photo], first: int, dim: int, fingerprint) -> pa.Table:
    """The shard of these photos' faces (each photo's in face order), numbered from face id ``first``, with its
    footer (first face id, model fingerprint)."""
    rows = [(p, f) for p in photos for f in sorted(p.faces, key=lambda f: f["face"])]

    def column(key, dtype, width=None):
        values = np.asarray([f[key] for _, f in rows], dtype=dtype)
        if width is None:
            return pa.array(values)
        flat = pa.array(values.reshape(-1) if len(rows) else np.zeros(0, dtype))
        return pa.FixedSizeListArray.from_arrays(flat, width)

    return pa.Table.from_arrays(
        [pa.array(np.arange(first, first + len(rows), dtype=np.int64)),
         pa.array([p.info["sha256"] for p, _ in rows], pa.string()), column("face", np.int32),
         column("box", np.float32, 4), column("landmarks", np.float32, 10), column("score", np.float32),
         column("embedding", np.float32, dim)],
        schema=schema(dim),
    ).replace_schema_metadata({FIRST_KEY: str(first).encode(), FINGERPRINT_KEY: str(fingerprint).encode()})


def photos_table(photos: list[Photo]) -> pa.Table:
    """The photos table of these photos, their ``info`` complete (``faces``, ``face_id``, ``photo_id`` set)."""
    return pa.Table.from_pylist([{k: p.info[k] or ("" if k == "error" else p.info[k]) for k in check.PHOTO_COLUMNS}
                                 for p in photos], schema=PHOTO_SCHEMA)


__all__ = ["Photo", "Shard", "schema", "faces_table", "photos_table", "PHOTO_FIELDS", "PHOTO_SCHEMA"]
