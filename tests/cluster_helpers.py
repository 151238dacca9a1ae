"""A small index written straight from real photos, for the clustering tests: every face of every photo (found by
the model's detector, as ``facetwin index`` does), one shard per call, committed by the index's own store, so the
cluster code is tested against the real format without running the indexing pipeline."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image


def add_shard(root: Path, model, photos: list[Path], archive_root: Path | None = None) -> int:
    """Commit one shard with every face of ``photos`` (paths kept below ``archive_root``, default the folder above
    their folders); returns the faces added."""
    from facetwin.collection.records import Photo
    from facetwin.collection.shards import IndexStore

    store = IndexStore(root, model, write=True)
    try:
        if store.archive_root is None:
            store.archive_root = str(archive_root or photos[0].parent.parent)
        committed = []
        for photo in photos:
            crops = [c for c in model.face_crops(str(photo), all_faces=True, no_face="center") if c.face is not None]
            st = photo.stat()
            with Image.open(photo) as img:
                width, height = img.size
            info = {"path": str(photo.relative_to(store.archive_root)),
                    "sha256": hashlib.sha256(photo.read_bytes()).hexdigest(), "size": st.st_size,
                    "mtime_ns": st.st_mtime_ns, "width": width, "height": height, "error": ""}
            vectors = model.embed_crops(np.stack([c.crop for c in crops])) if crops else []
            faces = [{"face": k, "box": np.asarray(c.face.box, np.float32),
                      "landmarks": np.asarray(c.face.landmarks, np.float32).reshape(10),
                      "score": float(c.face.score), "embedding": np.asarray(v, np.float32)}
                     for k, (c, v) in enumerate(zip(crops, vectors, strict=True))]
            committed.append(Photo(info, faces))
        store.commit(committed)
        store.manifest["photo_roots"] = ["."]
        store.write_manifest()
        return sum(len(p.faces) for p in committed)
    finally:
        store.close()
