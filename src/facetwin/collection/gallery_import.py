"""``facetwin gallery import INDEX_DIR``: enrol the people of an index whose photos sit in folders named by person."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from facetwin.backbones.registry import DEFAULT_BACKBONE
from facetwin.collection.shards import IndexStore
from facetwin.errors import FacetwinError


def import_index(index_dir: str | Path, gallery_path: str | Path | None = None) -> dict:
    """Enrol the first face of each photo (the index ranks a photo's faces by the main-face rule) under its
    folder's name; photos already enrolled are skipped.

    Photos directly inside a folder that was indexed (not in a sub-folder) have no person and are left out.
    ``gallery_path`` defaults to the index model's default gallery (the one ``facetwin serve`` uses).
    """
    from facetwin.gallery.location import default_gallery
    from facetwin.gallery.store import Gallery
    from facetwin.loading import is_run_dir

    store = IndexStore(index_dir)
    source = store.model_info.get("source") or DEFAULT_BACKBONE
    if gallery_path is None:
        gallery_path = default_gallery(source, str(store.model_info.get("fingerprint", "")), is_run=is_run_dir(source))
    gallery = Gallery(gallery_path, source)
    if gallery.model.fingerprint != store.model_info.get("fingerprint"):
        raise FacetwinError(f"{gallery_path}: this gallery's model differs from the model of the index {index_dir}.")
    roots = {str(Path(r)) for r in store.manifest.get("roots", [])}
    table = store.read_faces(["path", "sha256", "face", "embedding"])
    enrolled = gallery.sources()
    dim = int(store.model_info["embedding_dim"])
    vectors = table["embedding"].combine_chunks().values.to_numpy().reshape(table.num_rows, dim)
    people: dict[str, list] = defaultdict(list)
    digests: dict[str, list] = defaultdict(list)
    skipped = unnamed = 0
    for row, (path, digest, face) in enumerate(zip(*(table[c].to_pylist() for c in ("path", "sha256", "face")),
                                                   strict=True)):
        if face != 0:
            continue
        folder = Path(path).parent
        if str(folder) in roots or not folder.name:
            unnamed += 1
            continue
        person = folder.name
        if (person, digest) in enrolled:
            skipped += 1
            continue
        people[person].append(vectors[row])
        digests[person].append(digest)
    added = gallery.enroll_many({p: np.stack(v) for p, v in people.items()}, digests) if people else 0
    return {"gallery": str(gallery.path), "people": len(people), "enrolled": int(added), "already_enrolled": skipped,
            "unnamed": unnamed}


__all__ = ["import_index"]
