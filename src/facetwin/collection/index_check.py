"""One layer of checks for everything read back from an index folder, each failing with one sentence that names
the file: ``manifest.json`` (with its list of committed shards), every shard's footer and columns and every shard's
photos table (``photos/photos-NNNNNN.parquet``); the clustering files are checked by
:mod:`facetwin.collection.cluster_check` with the same helpers. The ANN files (``ann/``) are a cache:
:mod:`facetwin.collection.ann` uses a file only when this user's facetwin wrote or checked that very version of it,
and rebuilds it otherwise.

An index may come from anywhere (copied, downloaded, damaged by a crash or by hand), so nothing in it is trusted:
types, widths, ranges and cross-references are checked before any of it is used. The readers of the index
(:class:`facetwin.collection.shards.IndexStore`, :mod:`facetwin.collection.cluster_store`) call these checks and
nothing else reads the files, so a damaged index gives the same sentence in ``find``, ``cluster``,
``gallery import`` and ``serve --index``, and changes nothing on disk. Format 1 (photos in the shards' footers,
absolute paths) is read only to migrate it (:mod:`facetwin.collection.migrate`).
"""

from __future__ import annotations

import json
import math
import os
import posixpath
import re
from pathlib import Path

import numpy as np

from facetwin.core.paths import printable
from facetwin.errors import FacetwinError

FORMAT = "facetwin-index/2"
FORMAT_V1 = "facetwin-index/1"  # photos in the shards' footers, absolute paths: migrated when opened
PHOTOS_KEY = b"facetwin.photos"  # format 1 footer: the shard's photos (JSON list)
FIRST_KEY = b"facetwin.first_face_id"  # footer: the face id of its first row
FINGERPRINT_KEY = b"facetwin.model_fingerprint"  # footer: the model that made its embeddings
DISTANCES = ("cosine", "euclidean")
MAX_DIM = 65_536
MAX_FACES_PER_PHOTO = 100_000
MAX_ID = 2**53  # face and cluster ids stay exact in JSON and float64
MAX_COORD = 1e6  # no photo is a million pixels wide, no embedding holds such a number
HEX64 = re.compile(r"[0-9a-f]{64}")
HEX32 = re.compile(r"[0-9a-f]{32}")
SHARD_NAME = re.compile(r"shard-(\d{6,9})\.parquet")
MAX_PATH = 4096
PHOTO_INTS = ("faces", "face_id", "size", "mtime_ns", "width", "height")
FIXED_LISTS = {"box": 4, "landmarks": 10}  # + "embedding": the model's width
COLUMN_TYPES = {"face_id": "int64", "sha256": "string", "face": "int32", "score": "float"}
PHOTO_COLUMNS = {"path": "string", "sha256": "string", "size": "int64", "mtime_ns": "int64", "width": "int32",
                 "height": "int32", "faces": "int32", "face_id": "int64", "photo_id": "int64", "error": "string"}


def bad(path: Path, problem: str) -> FacetwinError:
    """The one sentence: the file, then what is wrong with it."""
    return FacetwinError(f"{path}: {problem}.")


def reason(exc: BaseException) -> str:
    """A library's error text as part of a sentence: one line, printable, at most 200 characters."""
    return printable(" ".join(str(exc).split()))[:200] or type(exc).__name__


def whole(value: object, low: int = 0, high: int = MAX_ID) -> bool:
    """A JSON whole number (not a bool) within ``low..high``."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _text(value: object, limit: int = MAX_PATH) -> bool:
    return isinstance(value, str) and 0 < len(value) <= limit and "\0" not in value


def _kind(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string"}.get(type(value), type(value).__name__)


def indexed_path(value: object) -> bool:
    """An absolute, normalised path (no ``..``, no ``.``): the archive root, and photo paths of format 1."""
    return _text(value) and os.path.isabs(value) and os.path.normpath(value) == value


def relative_path(value: object, *, folder: bool = False) -> bool:
    """A path below the archive root as format 2 stores it: relative, normalised, never leaving the root (no
    ``..``); ``folder``: ``.`` (the root itself) is one too."""
    if not _text(value) or value.startswith("/") or posixpath.normpath(value) != value:
        return False
    return (folder and value == ".") or (value != "." and value != ".." and not value.startswith("../"))


# ---------------------------------------------------------------------------------------------------- manifest
def manifest(path: Path, text: str) -> dict:
    """The manifest's JSON: a format 1 manifest as it is (its shards are checked when it is migrated), a format 2
    one with its model, archive root, shards and retired faces checked."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise bad(path, f"unreadable index manifest ({reason(exc)})") from None
    if not isinstance(doc, dict) or doc.get("format") not in (FORMAT, FORMAT_V1):
        raise bad(path, f"not a {FORMAT} manifest")
    model_record(path, doc.get("model"))
    for key, kind in (("runs", list), ("errors", list), ("shards", list), ("counts", dict), ("retired", list)):
        if key in doc and not isinstance(doc[key], kind):
            raise bad(path, f"the manifest's {key} is {_kind(doc[key])}, not {_kind(kind())}")
    if doc["format"] == FORMAT_V1:
        for key in ("roots", "photo_roots"):
            roots = doc.get(key, [])
            if not isinstance(roots, list) or not all(indexed_path(r) for r in roots):
                raise bad(path, f"the manifest's {key} must be a list of absolute folder paths")
        return doc
    if not isinstance(doc.get("id"), str) or not HEX32.fullmatch(doc["id"]):
        raise bad(path, "the manifest's id is not 32 hexadecimal digits")
    if not indexed_path(doc.get("root")):
        raise bad(path, "the manifest's root is not an absolute folder path")
    beside = doc.get("root_from_index")
    if not (_text(beside) and not beside.startswith("/") and posixpath.normpath(beside) == beside):
        raise bad(path, "the manifest's root_from_index is not a relative folder path")
    for key in ("roots", "photo_roots"):
        roots = doc.get(key, [])
        if not isinstance(roots, list) or not all(relative_path(r, folder=True) for r in roots):
            raise bad(path, f"the manifest's {key} must be a list of folders below the root")
    for key in ("next_face_id", "next_photo_id"):
        if not whole(doc.get(key)):
            raise bad(path, f"the manifest's {key} {str(doc.get(key))[:40]!r} is not a whole number")
    _shards(path, doc)
    for key, value in doc.get("counts", {}).items():
        if not whole(value):
            raise bad(path, f"the manifest's count of {printable(key)[:40]} is not a whole number")
    for error in doc.get("errors", []):
        if not (isinstance(error, dict) and relative_path(error.get("path")) and _text(error.get("reason"), 8192)):
            raise bad(path, "an unreadable photo of the manifest has no path below the root or no reason")
    for span in doc.get("retired", []):
        if not (isinstance(span, list) and len(span) == 2 and whole(span[0]) and whole(span[1], 1)
                and span[0] + span[1] <= doc["next_face_id"]):
            raise bad(path, f"the manifest's retired faces {str(span)[:40]} are not a range of its face ids")
    return doc


def _shards(path: Path, doc: dict) -> None:
    """The committed shards: increasing numbers, face ids one after the other up to ``next_face_id``, photo
    counts within ``next_photo_id``, each with the first and last of its photos' paths."""
    end, photos, number = 0, 0, -1
    for entry in doc.get("shards", []):
        if not isinstance(entry, dict):
            raise bad(path, f"a shard of the manifest is {_kind(entry)}, not an object")
        match = SHARD_NAME.fullmatch(str(entry.get("name")))
        if match is None or int(match.group(1)) <= number:
            raise bad(path, f"the manifest names a shard {str(entry.get('name'))[:40]!r} out of order or unlike "
                            "shard-NNNNNN.parquet")
        number = int(match.group(1))
        where = entry["name"]
        if not (whole(entry.get("first")) and whole(entry.get("faces")) and whole(entry.get("photos"), 1)):
            raise bad(path, f"the manifest's shard {where} has no whole numbers first, faces and photos")
        if entry["first"] != end:
            raise bad(path, f"the manifest's shard {where} starts at face id {entry['first']}, not {end}")
        if not (relative_path(entry.get("lo")) and relative_path(entry.get("hi")) and entry["lo"] <= entry["hi"]):
            raise bad(path, f"the manifest's shard {where} has no first and last photo path below the root")
        if not relative_path(entry.get("prefix", "."), folder=True):
            raise bad(path, f"the manifest's shard {where} has a prefix that is not a folder below the root")
        end += entry["faces"]
        photos += entry["photos"]
    if end != doc["next_face_id"] or photos > doc["next_photo_id"]:
        raise bad(path, f"the manifest's shards hold face ids up to {end}, but its next face id is "
                        f"{doc['next_face_id']}")


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
def footer(shard: Path, metadata: dict | None, model: dict) -> int:
    """A shard's first face id, its footer checked against the manifest's model."""
    metadata = metadata or {}
    try:
        first = json.loads(metadata[FIRST_KEY])
    except (KeyError, ValueError) as exc:
        raise bad(shard, f"not a facetwin index shard (its footer has no readable {exc})") from None
    if not whole(first):
        raise bad(shard, f"the footer's first face id {first!r} is not a whole number")
    made_by = printable(metadata.get(FINGERPRINT_KEY, b"").decode(errors="replace"))
    if model and made_by != model.get("fingerprint"):
        raise bad(shard, f"made by another model ({made_by[:12] or 'none named'}) than the one the manifest "
                         f"names ({str(model.get('fingerprint'))[:12]})")
    return first


def footer_v1(shard: Path, metadata: dict | None, num_rows: int, model: dict) -> tuple[int, list[dict]]:
    """A format 1 shard's first face id and photos (its footer), checked against its row count and the model."""
    first = footer(shard, metadata, model)
    try:
        photos = json.loads((metadata or {})[PHOTOS_KEY])
    except (KeyError, ValueError) as exc:
        raise bad(shard, f"not a facetwin index shard (its footer has no readable {exc})") from None
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


def _columns(file: Path, arrow_schema, types: dict[str, str]) -> dict:
    fields = {f.name: f.type for f in arrow_schema}
    for name, kind in types.items():
        found = fields.get(name)
        if found is None or str(found) != kind:
            raise bad(file, f"column {name} is {'missing' if found is None else printable(found)[:80]}, not {kind}")
    return fields


def schema(shard: Path, arrow_schema, dim: int) -> None:
    """The shard's columns: the names and types ``facetwin index`` writes, the embedding ``dim`` wide."""
    import pyarrow as pa

    fields = _columns(shard, arrow_schema, COLUMN_TYPES)
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


def photo_schema():
    """The Arrow schema of a photos table."""
    import pyarrow as pa

    return pa.schema([(name, pa.string() if kind == "string" else getattr(pa, kind)())
                      for name, kind in PHOTO_COLUMNS.items()])


def photos_table(file: Path, table, entry: dict) -> None:
    """A shard's photos table: the columns ``facetwin index`` writes, no empty value, the shard's photos (as many as
    its manifest entry says) in the order of their faces, each path once and below the root, face ids one after the
    other from the shard's first, digests where the photo was read, unique photo ids, and the first and last path
    (in sorted order) the manifest records."""
    _columns(file, table.schema, PHOTO_COLUMNS)
    for name in PHOTO_COLUMNS:
        if table[name].null_count:
            raise bad(file, f"column {name} has empty values")
    n = table.num_rows
    if n != entry["photos"]:
        raise bad(file, f"it holds {n} photos but the manifest gives its shard {entry['photos']}")
    paths = table["path"].to_pylist()
    for value in paths:
        if not relative_path(value):
            raise bad(file, f"it names a photo at {printable(value)[:80]!r}, not a path below the archive root")
    if len(set(paths)) != n:
        raise bad(file, "a photo is there twice")
    if min(paths) != entry["lo"] or max(paths) != entry["hi"]:
        raise bad(file, "its first and last photo paths are not the ones the manifest records")
    faces = table["faces"].to_numpy()
    ids = table["face_id"].to_numpy()
    if faces.min() < 0 or faces.max() > MAX_FACES_PER_PHOTO or int(faces.sum()) != entry["faces"]:
        raise bad(file, f"its photos have {int(faces.sum())} faces, not the {entry['faces']} of its shard")
    if not np.array_equal(ids, entry["first"] + np.cumsum(faces) - faces):
        raise bad(file, "its photos' face ids do not follow one another from the shard's first face id")
    photo_ids = table["photo_id"].to_numpy()
    if photo_ids.min() < 0 or photo_ids.max() > MAX_ID or (len(np.unique(photo_ids)) != n):
        raise bad(file, "its photo ids are negative, too large or repeated")
    for name in ("size", "mtime_ns", "width", "height"):
        if table[name].to_numpy().min() < -1:
            raise bad(file, f"column {name} holds a negative value")
    digests, errors = table["sha256"].to_pylist(), table["error"].to_pylist()
    for digest, error, count in zip(digests, errors, faces, strict=True):
        if not (HEX64.fullmatch(digest) or (digest == "" and error and count == 0)):
            raise bad(file, f"a photo has the digest {printable(digest)[:70]!r}, not a SHA-256 hex digest")
        if len(error) > MAX_PATH + 1000 or (error and count):
            raise bad(file, "a photo with faces also has an error, or an error is absurdly long")


def rows(shard: Path, table, first: int, sha256: np.ndarray, faces: np.ndarray) -> None:
    """The columns read from a shard agree with its photos (``sha256`` and ``faces`` per photo, in order): dense
    ids, each face on its photo's rows, no null, no NaN or infinity, boxes inside a sane range."""
    n = table.num_rows
    for name in table.column_names:
        if table[name].null_count:
            raise bad(shard, f"column {name} has empty values")
    if "face_id" in table.column_names and not np.array_equal(table["face_id"].to_numpy(), first + np.arange(n)):
        raise bad(shard, "its face ids are not the ones its footer gives (repeated, missing or out of order)")
    if "sha256" in table.column_names:
        expected = np.repeat(np.asarray(sha256, dtype=object), faces)
        if not np.array_equal(table["sha256"].to_numpy(zero_copy_only=False), expected):
            raise bad(shard, "a row's sha256 is not the sha256 of the photo its photos table gives for that face")
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
    """A fixed-size list column as an ``(rows, width)`` array (offsets respected): float32, or int64 for ints."""
    array = table[column].combine_chunks()
    width = array.type.list_size
    values = array.flatten().to_numpy(zero_copy_only=False).reshape(len(array), width)
    return values if values.dtype == np.int64 else values.astype(np.float32, copy=False)
