"""A small ``facetwin-index/1`` folder written straight from real photos, for the clustering tests.

The index engineer's ``facetwin index`` writes this format; this helper writes the same columns and footer (every
face of every photo, one shard per call) so the cluster code is tested against the format, not a mock of it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image


def add_shard(root: Path, model, photos: list[Path]) -> int:
    """Append one shard with every face of ``photos`` (and write the manifest); returns the faces added."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "shards").mkdir(exist_ok=True)
    manifest_path = root / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {
        "format": "facetwin-index/1", "next_face_id": 0,
        "model": {"source": model.source, "fingerprint": model.fingerprint, "distance": model.distance,
                  "threshold": model.threshold, "embedding_dim": model.embedding_dim},
    }
    manifest["photo_roots"] = sorted({*manifest.get("photo_roots", []), *(str(p.parent) for p in photos)})
    first = next_id = manifest["next_face_id"]
    rows, infos = [], []
    for photo in photos:
        crops = [c for c in model.face_crops(str(photo), all_faces=True, no_face="center") if c.face is not None]
        digest = hashlib.sha256(photo.read_bytes()).hexdigest()
        st = photo.stat()
        with Image.open(photo) as img:
            width, height = img.size
        infos.append({"path": str(photo), "sha256": digest, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                      "width": width, "height": height, "faces": len(crops), "face_id": next_id, "error": None})
        emb = model.embed_crops(np.stack([c.crop for c in crops])) if crops else []
        for k, (crop, vec) in enumerate(zip(crops, emb, strict=True)):
            rows.append((next_id, str(photo), digest, k, crop.face.box, np.ravel(crop.face.landmarks),
                         crop.face.score, vec))
            next_id += 1
    cols = list(zip(*rows, strict=True))
    dim = model.embedding_dim
    table = pa.table({
        "face_id": pa.array(cols[0], pa.int64()), "path": pa.array(cols[1]), "sha256": pa.array(cols[2]),
        "face": pa.array(cols[3], pa.int32()),
        "box": pa.array([list(map(float, b)) for b in cols[4]], pa.list_(pa.float32(), 4)),
        "landmarks": pa.array([list(map(float, b)) for b in cols[5]], pa.list_(pa.float32(), 10)),
        "score": pa.array(cols[6], pa.float32()),
        "embedding": pa.array([list(map(float, v)) for v in cols[7]], pa.list_(pa.float32(), dim)),
    })
    table = table.replace_schema_metadata(
        {b"facetwin.photos": json.dumps(infos).encode(), b"facetwin.first_face_id": str(first).encode(),
         b"facetwin.model_fingerprint": model.fingerprint.encode()}
    )
    number = len(list((root / "shards").glob("shard-*.parquet")))
    pq.write_table(table, root / "shards" / f"shard-{number:06d}.parquet")
    manifest["next_face_id"] = next_id
    manifest_path.write_text(json.dumps(manifest))
    return next_id - first
