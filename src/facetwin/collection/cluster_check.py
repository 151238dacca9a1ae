"""Checks of the clustering files of an index folder, each failing with one sentence that names the file:
``clusters.parquet`` (its columns and its footer: names, next cluster id, the faces clustered so far and the graph
files) and the k-NN graph files in ``graph/``.

Like the rest of an index they may come from anywhere (copied, downloaded, damaged by a crash or by hand), so nothing
in them is trusted: types, widths, ranges and names are checked before any of it is used. Only
:mod:`facetwin.collection.cluster_store` reads these files, and it calls these checks, so a damaged clustering gives
the same sentence in ``cluster`` and ``serve --index``. The helpers and limits are the index's own
(:mod:`facetwin.collection.index_check`).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from facetwin.collection.index_check import MAX_COORD, MAX_ID, bad, matrix, whole
from facetwin.core.validate import person_name
from facetwin.errors import FacetwinError


def clusters(path: Path, table, meta: object, formats: tuple[str, ...]) -> tuple[dict[int, str], int, dict]:
    """A cluster table's columns and footer: unique face ids, clusters ``-1`` (noise) or ids below ``next_id``, in
    the latest format a radius per face, the face ids clustered so far and the k-NN graph files; names by the rules
    of person names. Returns the names, ``next_id`` and the rest of the footer."""
    import pyarrow as pa

    if not isinstance(meta, dict) or meta.get("format") not in formats:
        raise bad(path, f"not a {formats[-1]} cluster table")
    for name in ("face_id", "cluster"):
        if name not in table.column_names or not pa.types.is_integer(table[name].type) or table[name].null_count:
            raise bad(path, f"column {name} is missing or not whole numbers")
    ids, labels = table["face_id"].to_numpy(), table["cluster"].to_numpy()
    if len(ids) and (ids.min() < 0 or ids.max() > MAX_ID or len(np.unique(ids)) != len(ids)):
        raise bad(path, "its face ids are negative, too large or repeated")
    if meta["format"] == formats[-1]:
        _graph_footer(path, table, meta, ids)
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


GRAPH_NAME = re.compile(r"graph-\d{1,16}-[0-9a-f]{8}\.parquet")


def _graph_footer(path: Path, table, meta: dict, ids: np.ndarray) -> None:
    """The incremental part of a cluster table: each face's radius, the face ids clustered so far (every face of
    the table below it) and the k-NN graph files."""
    import pyarrow as pa

    if "radius" not in table.column_names or table["radius"].type != pa.float32() or table["radius"].null_count:
        raise bad(path, "column radius is missing or not float32 numbers")
    radius = table["radius"].to_numpy()
    if not np.isfinite(radius).all() or (radius < 0).any() or (radius > MAX_COORD).any():
        raise bad(path, "column radius holds NaN, negative or absurd values")
    through = meta.get("through")
    if not whole(through) or (len(ids) and ids.max() >= through):
        raise bad(path, f"its count of faces clustered {str(through)[:20]!r} is not a whole number above its ids")
    if not whole(meta.get("k"), 1, 1024):
        raise bad(path, "its k (neighbours per face) is not a whole number from 1 to 1024")
    graphs = meta.get("graphs")
    if not isinstance(graphs, list) or not all(isinstance(g, str) and GRAPH_NAME.fullmatch(g) for g in graphs):
        raise bad(path, "its graph files are not a list of graph-FACEID-XXXXXXXX.parquet names")


def graph(path: Path, table, k: int) -> None:
    """Rows of a k-NN graph file: increasing face ids, ``k`` neighbours (face ids, -1 where none) and ``k`` finite
    distances each."""
    import pyarrow as pa

    fields = {f.name: f.type for f in table.schema}
    if str(fields.get("face_id")) != "int64" or table["face_id"].null_count:
        raise bad(path, "column face_id is missing or not int64")
    for name, kind in (("neighbors", pa.int64()), ("distances", pa.float32())):
        found = fields.get(name)
        if not (found is not None and pa.types.is_fixed_size_list(found) and found.list_size == k
                and found.value_type == kind and not table[name].null_count):
            raise bad(path, f"column {name} is not {k} {kind} values a row")
    ids = table["face_id"].to_numpy()
    if len(ids) and (ids.min() < 0 or ids.max() > MAX_ID or (np.diff(ids) <= 0).any()):
        raise bad(path, "its face ids are negative, too large, repeated or out of order")
    neighbors, distances = matrix(table, "neighbors"), matrix(table, "distances")
    if len(ids) and (neighbors.min() < -1 or neighbors.max() > MAX_ID):
        raise bad(path, "a neighbour is not a face id")
    if not np.isfinite(distances).all() or (distances < 0).any() or (distances > MAX_COORD).any():
        raise bad(path, "column distances holds NaN, negative or absurd values")
