"""The faces of a ``facetwin index`` folder, read for clustering: a minimal reading of format ``facetwin-index/1``.

What is read (and all that clustering relies on): ``INDEX_DIR/manifest.json`` (``format``, ``model`` with ``source``,
``fingerprint``, ``distance``, ``threshold``) and ``INDEX_DIR/shards/shard-*.parquet``, one row per face with
``face_id`` (dense, never reused), ``path``, ``sha256``, ``face``, ``box`` (x, y, w, h) and ``embedding``; each
shard's footer key ``facetwin.photos`` lists the photos it covers (``path``, ``face_id`` of the first face,
``faces``). A photo listed again in a later shard (its bytes changed) retires the faces of its earlier versions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facetwin.errors import FacetwinError

FORMAT = "facetwin-index/1"
PHOTOS_KEY = b"facetwin.photos"
COLUMNS = ["face_id", "path", "sha256", "face", "box", "embedding"]


@dataclass
class IndexFaces:
    """Every current face of an index, in ``face_id`` order."""

    root: Path
    model: dict  # the manifest's model record
    face_ids: np.ndarray  # (N,) int64
    paths: list[str]
    digests: list[str]
    faces: np.ndarray  # (N,) face number within its photo
    boxes: np.ndarray  # (N, 4) float32, x y w h in photo pixels
    embeddings: np.ndarray  # (N, D) float32

    def __len__(self) -> int:
        return len(self.face_ids)


def read_manifest(root: str | Path) -> dict:
    """The index's manifest, checked for its format."""
    path = Path(root) / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise FacetwinError(f"{root}: not a facetwin index (no manifest.json).") from None
    except (OSError, ValueError) as exc:
        raise FacetwinError(f"{path}: unreadable index manifest ({exc}).") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise FacetwinError(f"{path}: not a {FORMAT} manifest.")
    return manifest


def read_faces(root: str | Path, *, embeddings: bool = True) -> IndexFaces:
    """The current faces of the index at ``root`` (retired versions of changed photos left out)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(root)
    manifest = read_manifest(root)
    model = manifest.get("model") or {}
    shards = sorted((root / "shards").glob("shard-*.parquet"))
    columns = COLUMNS if embeddings else COLUMNS[:-1]
    tables, latest, retired = [], {}, []
    for shard in shards:
        try:
            pf = pq.ParquetFile(shard)
            photos = json.loads((pf.metadata.metadata or {}).get(PHOTOS_KEY, b"[]"))
            tables.append(pf.read(columns=columns))
        except (OSError, ValueError, KeyError, pa.ArrowException) as exc:
            raise FacetwinError(f"{shard}: unreadable index shard ({exc}).") from None
        for info in photos:
            if info.get("path") in latest:
                retired.append(latest[info["path"]])
            latest[info.get("path")] = info
    dim = int(model.get("embedding_dim") or 0)
    if not tables:
        return IndexFaces(root, model, np.zeros(0, np.int64), [], [], np.zeros(0, np.int32),
                          np.zeros((0, 4), np.float32), np.zeros((0, dim), np.float32))
    table = pa.concat_tables(tables)
    ids = table["face_id"].to_numpy()
    gone = [np.arange(r["face_id"], r["face_id"] + r["faces"]) for r in retired if r.get("faces")]
    keep = ~np.isin(ids, np.concatenate(gone)) if gone else np.ones(len(ids), bool)
    table = table.filter(pa.array(keep))
    order = np.argsort(table["face_id"].to_numpy(), kind="stable")
    table = table.take(pa.array(order))
    n = table.num_rows
    emb = np.zeros((n, dim), np.float32)
    if embeddings and n:
        emb = table["embedding"].combine_chunks().values.to_numpy().reshape(n, -1).astype(np.float32, copy=False)
    return IndexFaces(
        root, model, table["face_id"].to_numpy().astype(np.int64), table["path"].to_pylist(),
        table["sha256"].to_pylist(), table["face"].to_numpy(),
        table["box"].combine_chunks().values.to_numpy().reshape(n, 4).astype(np.float32), emb,
    )
