"""Format 1 indexes (every shard's photos as JSON in its footer, absolute paths) become format 2 once, when opened.

Every footer is read and checked as format 1 did (one sentence naming the shard when one is damaged, nothing
written); the archive root becomes the deepest folder holding every photo and every folder that was indexed; each
shard gets its photos table (paths below that root, photo ids in commit order, earlier versions of a photo indexed
again retired as format 1 left them out), written beside it; then the format 2 manifest replaces the old one in one
rename, the commit point. A migration killed before it leaves the format 1 index as it was (the photos tables it
wrote are removed and written again). The shards themselves are not rewritten: their ``path`` column (absolute) is
no longer read. The old ANN file (``faces.hnsw``) is removed; ``find`` builds the new one.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from facetwin.collection import archive
from facetwin.collection import index_check as check
from facetwin.collection.index_check import FORMAT
from facetwin.core import paths
from facetwin.errors import FacetwinError


def _footers(root: Path, model: dict) -> list[tuple[Path, int, list[dict]]]:
    """Every format 1 shard (the files are the truth in format 1) with its first face id and checked photos."""
    found = []
    dim = int(model["embedding_dim"])
    for shard in sorted((root / "shards").glob("shard-*.parquet")):
        if check.SHARD_NAME.fullmatch(shard.name) is None:
            raise check.bad(shard, "not named like an index shard (shard-NNNNNN.parquet)")
        try:
            meta = pq.read_metadata(shard)
            arrow_schema = meta.schema.to_arrow_schema()
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise FacetwinError(f"{shard}: unreadable index shard ({check.reason(exc)}).") from None
        check.schema(shard, arrow_schema, dim)
        first, photos = check.footer_v1(shard, meta.metadata, meta.num_rows, model)
        if not photos:
            raise check.bad(shard, "its footer names no photo")
        found.append((shard, first, photos))
    end = 0
    for shard, first, photos in found:
        if first != end:
            raise check.bad(shard, f"its face ids start at {first}, not at {end} right after the shard before")
        end += sum(p["faces"] for p in photos)
    return found


def migrate(root: Path, doc: dict) -> dict:
    """Make the format 1 index at ``root`` (manifest ``doc``) format 2; returns the new manifest."""
    footers = _footers(root, doc["model"])
    folders = [r for key in ("roots", "photo_roots") for r in doc.get(key, [])]
    places = folders + [os.path.dirname(p["path"]) for _, _, photos in footers for p in photos]
    base = os.path.commonpath(places) if places else os.path.dirname(os.path.abspath(root))
    latest: dict[str, dict] = {}
    retired, shards, photo_id = [], [], 0
    paths.private_folder(root / "photos")
    for shard, first, photos in footers:
        rows, seen = [], set()
        for info in photos:
            rel = archive.relative(info["path"], base)
            if rel is None or not check.relative_path(rel):
                raise check.bad(shard, f"the footer names a photo at {info['path'][:80]!r}, outside every folder "
                                       "the index records")
            if rel in seen:
                raise check.bad(shard, f"the footer names the photo {info['path'][:80]!r} twice")
            seen.add(rel)
            row = {**{k: info[k] for k in check.PHOTO_COLUMNS if k in info}, "path": rel, "photo_id": photo_id,
                   "error": info.get("error") or ""}
            old = latest.get(rel)
            if old is not None and old["faces"]:
                retired.append([old["face_id"], old["faces"]])
            latest[rel] = row
            rows.append(row)
            photo_id += 1
        names = sorted(r["path"] for r in rows)
        number = int(shard.name[6:-8])
        try:
            table = pa.Table.from_pylist(rows, schema=check.photo_schema())
        except (pa.ArrowException, OverflowError) as exc:
            raise check.bad(shard, f"its footer holds a value its photos table cannot ({check.reason(exc)})") from None
        paths.atomic_write(root / "photos" / f"photos-{number:06d}.parquet",
                           lambda tmp, table=table: pq.write_table(table, tmp, compression="zstd"), private=True)
        shards.append({"name": shard.name, "first": first, "faces": sum(r["faces"] for r in rows),
                       "photos": len(rows), "lo": names[0], "hi": names[-1]})
    current = list(latest.values())
    faces = sum(r["faces"] for r in current)
    manifest = {
        **{k: v for k, v in doc.items() if k in ("created", "runs", "model")},
        "format": FORMAT, "id": uuid.uuid4().hex, "root": base, "root_from_index": archive.from_index(root, base),
        "roots": sorted({archive.relative(r, base) or "." for r in doc.get("roots", [])}),
        "photo_roots": sorted({archive.relative(r, base) or "." for r in doc.get("photo_roots", [])}),
        "next_face_id": shards[-1]["first"] + shards[-1]["faces"] if shards else 0, "next_photo_id": photo_id,
        "shards": shards, "retired": retired,
        "counts": {"photos": len(current), "faces": faces, "shards": len(shards),
                   "errors": sum(1 for r in current if r["error"]),
                   "no_face": sum(1 for r in current if not r["error"] and r["faces"] == 0),
                   "retired_faces": sum(n for _, n in retired)},
        "errors": [{"path": r["path"], "reason": r["error"]} for r in current if r["error"]],
        "migrated": {"from": check.FORMAT_V1},
    }
    check.manifest(root / "manifest.json", json.dumps(manifest))  # what format 1 allowed, format 2 must too
    paths.atomic_write_text(root / "manifest.json", json.dumps(manifest, separators=(",", ":")), private=True)
    for stale in (root / "faces.hnsw", root / "faces.hnsw.json"):
        stale.unlink(missing_ok=True)
    return manifest


__all__ = ["migrate"]
