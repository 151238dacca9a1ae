"""One layer of checks for everything read back from an index folder, each failing with one sentence that names
the file: ``manifest.json``, every shard's footer (its photos, first face id, model) and columns, and
``clusters.parquet``. The ANN file (``faces.hnsw``) is a cache: :mod:`facetwin.gallery.index` checks its structure
and vectors when it loads it and rebuilds it when it does not hold exactly the index's faces.

An index may come from anywhere (copied, downloaded, damaged by a crash or by hand), so nothing in it is trusted:
types, widths, ranges and cross-references are checked before any of it is used. The readers of the index
(:class:`facetwin.collection.shards.IndexStore`, :mod:`facetwin.collection.cluster_store`) call these checks and
nothing else reads the files, so a damaged index gives the same sentence in ``find``, ``cluster``,
``gallery import`` and ``serve --index``, and changes nothing on disk.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np

from facetwin.core.paths import printable
from facetwin.core.validate import person_name
from facetwin.errors import FacetwinError

FORMAT = "facetwin-index/1"
PHOTOS_KEY = b"facetwin.photos"  # footer: the shard's photos (JSON list)
FIRST_KEY = b"facetwin.first_face_id"  # footer: the face id of its first row
FINGERPRINT_KEY = b"facetwin.model_fingerprint"  # footer: the model that made its embeddings
DISTANCES = ("cosine", "euclidean")
MAX_DIM = 65_536
MAX_FACES_PER_PHOTO = 100_000
MAX_ID = 2**53  # face and cluster ids stay exact in JSON and float64
MAX_COORD = 1e6  # no photo is a million pixels wide, no embedding holds such a number
HEX64 = re.compile(r"[0-9a-f]{64}")
PHOTO_INTS = ("faces", "face_id", "size", "mtime_ns", "width", "height")
FIXED_LISTS = {"box": 4, "landmarks": 10}  # + "embedding": the model's width
COLUMN_TYPES = {"face_id": "int64", "path": "string", "sha256": "string", "face": "int32", "score": "float"}


def bad(path: Path, problem: str) -> FacetwinError:
    """The one sentence: the file, then what is wrong with it."""
    return FacetwinError(f"{path}: {problem}.")


def reason(exc: BaseException) -> str:
    """A library's error text as part of a sentence: one line, printable, at most 200 characters."""
    return printable(" ".join(str(exc).split()))[:200] or type(exc).__name__


def whole(value: object, low: int = 0, high: int = MAX_ID) -> bool:
    """A JSON whole number (not a bool) within ``low..high``."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _text(value: object, limit: int = 4096) -> bool:
    return isinstance(value, str) and 0 < len(value) <= limit and "\0" not in value


def _kind(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string"}.get(type(value), type(value).__name__)


def indexed_path(value: object) -> bool:
    """A photo path as ``facetwin index`` writes it: absolute and normalised (no ``..``, no ``.``)."""
    return _text(value) and os.path.isabs(value) and os.path.normpath(value) == value


# ---------------------------------------------------------------------------------------------------- manifest
def manifest(path: Path, text: str) -> dict:
    """The manifest's JSON, with its model record and roots checked."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise bad(path, f"unreadable index manifest ({reason(exc)})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise bad(path, f"not a {FORMAT} manifest")
    model_record(path, doc.get("model"))
    for key in ("roots", "photo_roots"):
        roots = doc.get(key, [])
        if not isinstance(roots, list) or not all(indexed_path(r) for r in roots):
            raise bad(path, f"the manifest's {key} must be a list of absolute folder paths")
    for key, kind in (("runs", list), ("errors", list), ("shards", list), ("counts", dict)):
        if key in doc and not isinstance(doc[key], kind):
            raise bad(path, f"the manifest's {key} is {_kind(doc[key])}, not {_kind(kind())}")
    return doc


def model_record(path: Path, model: object) -> dict:
    """The manifest's ``model``: source, fingerprint, distance, threshold and embedding width."""
    if not isinstance(model, dict):
        raise bad(path, f"the manifest's model is {_kind(model)}, not an object naming the model")
    if not _text(model.get("source")):
        raise bad(path, "the manifest's model has no source (a backbone name or run directory)")
    if not isinstance(model.get("fingerprint"), str) or not HEX64.fullmatch(model["fingerprint"]):
        raise bad(path, "the manifest's model fingerprint is not a SHA-256 hex digest")
    if model.get("distance") not in DISTANCES:
        raise bad(path, f"the manifest's model distance must be one of {', '.join(DISTANCES)}")
    threshold = model.get("threshold")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, int | float)
                                  or math.isinf(threshold) or (math.isfinite(threshold) and threshold < 0)):
        raise bad(path, f"the manifest's model threshold {threshold!r} is not a distance")
    if not whole(model.get("embedding_dim"), 1, MAX_DIM):
        raise bad(path, f"the manifest's embedding_dim {model.get('embedding_dim')!r} is not a whole number from 1 "
                        f"to {MAX_DIM}")
    return model


# ------------------------------------------------------------------------------------------------------ shards
def footer(shard: Path, metadata: dict | None, num_rows: int, model: dict) -> tuple[int, list[dict]]:
    """A shard's first face id and photos, checked against its row count and the manifest's model."""
    metadata = metadata or {}
    try:
        photos = json.loads(metadata[PHOTOS_KEY])
        first = json.loads(metadata[FIRST_KEY])
    except (KeyError, ValueError) as exc:
        raise bad(shard, f"not a facetwin index shard (its footer has no readable {exc})") from None
    if not whole(first):
        raise bad(shard, f"the footer's first face id {first!r} is not a whole number")
    made_by = printable(metadata.get(FINGERPRINT_KEY, b"").decode(errors="replace"))
    if model and made_by != model.get("fingerprint"):
        raise bad(shard, f"made by another model ({made_by[:12] or 'none named'}) than the one the manifest "
                         f"names ({str(model.get('fingerprint'))[:12]})")
    if not isinstance(photos, list):
        raise bad(shard, "the footer's photos are not a list")
    start = first
    for info in photos:
        _photo(shard, info)
        if info["face_id"] != start:
            raise bad(shard, f"the footer gives {info['path']!r} face id {info['face_id']}, not {start}")
        start += info["faces"]
    if start - first != num_rows:
        raise bad(shard, f"the footer's photos have {start - first} faces but the shard holds {num_rows} rows")
    return first, photos


def _photo(shard: Path, info: object) -> None:
    if not isinstance(info, dict):
        raise bad(shard, f"a photo of the footer is {_kind(info)}, not an object")
    if not indexed_path(info.get("path")):
        raise bad(shard, f"the footer names a photo at {str(info.get('path'))[:80]!r}, not an absolute path")
    where = repr(info["path"])
    if not isinstance(info.get("sha256"), str) or not (info["sha256"] == "" or HEX64.fullmatch(info["sha256"])):
        raise bad(shard, f"the footer's photo {where} has no SHA-256 digest")
    for key in PHOTO_INTS:
        if not whole(info.get(key), -1, MAX_FACES_PER_PHOTO if key == "faces" else 2**63 - 1):
            raise bad(shard, f"the footer's photo {where} has no whole number {key}")
    if info["faces"] < 0 or info["face_id"] < 0:
        raise bad(shard, f"the footer's photo {where} has a negative face count or id")
    if info.get("error") is not None and not isinstance(info["error"], str):
        raise bad(shard, f"the footer's photo {where} has an error that is not text")


def schema(shard: Path, arrow_schema, dim: int) -> None:
    """The shard's columns: the names and types ``facetwin index`` writes, the embedding ``dim`` wide."""
    import pyarrow as pa

    fields = {f.name: f.type for f in arrow_schema}
    for name, kind in COLUMN_TYPES.items():
        found = fields.get(name)
        if found is None or str(found) != kind:
            raise bad(shard, f"column {name} is {'missing' if found is None else printable(found)[:80]}, not {kind}")
    for name, width in {**FIXED_LISTS, "embedding": dim}.items():
        found = fields.get(name)
        if not (found is not None and pa.types.is_fixed_size_list(found) and found.list_size == width
                and found.value_type == pa.float32()):
            shown = "missing" if found is None else printable(found)[:80]
            raise bad(shard, f"column {name} is {shown}, not {width} float32 numbers a row")


def ranges(spans: list[tuple[Path, int, int]]) -> None:
    """Shards' face id ranges ``(shard, first, rows)`` in shard order: increasing and disjoint (no face id twice)."""
    end = 0
    for shard, first, rows in spans:
        if first < end:
            raise bad(shard, f"its face ids start at {first}, inside the ids of an earlier shard (up to {end - 1})")
        end = first + rows


def rows(shard: Path, table, first: int, photos: list[dict]) -> None:
    """The columns read from a shard agree with its footer: dense ids, each face on its photo's rows, no null, no
    NaN or infinity, boxes inside a sane range."""
    n = table.num_rows
    for name in table.column_names:
        if table[name].null_count:
            raise bad(shard, f"column {name} has empty values")
    faces = np.asarray([p["faces"] for p in photos], np.int64)
    if "face_id" in table.column_names and not np.array_equal(table["face_id"].to_numpy(), first + np.arange(n)):
        raise bad(shard, "its face ids are not the ones its footer gives (repeated, missing or out of order)")
    for name in ("path", "sha256"):
        if name in table.column_names:
            expected = np.repeat(np.asarray([p[name] for p in photos], dtype=object), faces)
            if not np.array_equal(table[name].to_numpy(zero_copy_only=False), expected):
                raise bad(shard, f"a row's {name} is not the {name} of the photo its footer gives for that face")
    if "face" in table.column_names:
        starts = np.repeat(np.cumsum(faces) - faces, faces)
        if not np.array_equal(table["face"].to_numpy(), np.arange(n) - starts):
            raise bad(shard, "its face numbers are not 0, 1, ... within each photo")
    for name in ("box", "landmarks", "score", "embedding"):
        if name in table.column_names:
            values = matrix(table, name) if name != "score" else table[name].to_numpy()
            if not np.isfinite(values).all() or np.abs(values).max(initial=0) > MAX_COORD:
                raise bad(shard, f"column {name} holds NaN, infinite or absurd values")
            if name == "box" and n and (values[:, 2:] <= 0).any():
                raise bad(shard, "a face box has no width or height")


def matrix(table, column: str) -> np.ndarray:
    """A fixed-size list column as an ``(rows, width)`` float32 array (offsets respected)."""
    array = table[column].combine_chunks()
    width = array.type.list_size
    return array.flatten().to_numpy(zero_copy_only=False).reshape(len(array), width).astype(np.float32, copy=False)


# ----------------------------------------------------------------------------------------------------- clusters
def clusters(path: Path, table, meta: object, format_name: str) -> tuple[dict[int, str], int, dict]:
    """A cluster table's columns and footer: unique face ids, clusters ``-1`` (noise) or ids below ``next_id``,
    names by the rules of person names. Returns the names, ``next_id`` and the rest of the footer."""
    import pyarrow as pa

    if not isinstance(meta, dict) or meta.get("format") != format_name:
        raise bad(path, f"not a {format_name} cluster table")
    for name in ("face_id", "cluster"):
        if name not in table.column_names or not pa.types.is_integer(table[name].type) or table[name].null_count:
            raise bad(path, f"column {name} is missing or not whole numbers")
    ids, labels = table["face_id"].to_numpy(), table["cluster"].to_numpy()
    if len(ids) and (ids.min() < 0 or ids.max() > MAX_ID or len(np.unique(ids)) != len(ids)):
        raise bad(path, "its face ids are negative, too large or repeated")
    next_id = meta.get("next_id", 0)
    if not whole(next_id):
        raise bad(path, f"its next cluster id {next_id!r} is not a whole number")
    if len(labels) and (labels.min() < -1 or labels.max() >= next_id):
        raise bad(path, f"a cluster id is below -1 or not below the next free id {next_id}")
    raw = meta.get("names", {})
    if not isinstance(raw, dict):
        raise bad(path, "its cluster names are not an object")
    names: dict[int, str] = {}
    for key, value in raw.items():
        if not re.fullmatch(r"\d{1,15}", str(key)):
            raise bad(path, f"a cluster name is given for {str(key)[:20]!r}, not a cluster id")
        try:
            names[int(key)] = person_name(value)
        except FacetwinError as exc:
            raise bad(path, f"cluster {key} has a name that is refused: {str(exc).rstrip('.')}") from None
    for key in ("threshold", "merge_distance", "merge_probability"):
        value = meta.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise bad(path, f"its {key} is not a number")
    rest = {k: v for k, v in meta.items() if k not in ("names", "next_id")}
    return names, next_id, rest
