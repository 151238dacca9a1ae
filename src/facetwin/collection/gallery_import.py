"""``facetwin gallery import INDEX_DIR``: enrol the people of an index whose photos sit in folders named by person."""

from __future__ import annotations

import posixpath
from collections import defaultdict
from pathlib import Path

import numpy as np

from facetwin.collection.index_check import matrix
from facetwin.collection.shards import IndexStore, index_model
from facetwin.core.validate import person_name
from facetwin.errors import FacetwinError


def import_index(index_dir: str | Path, gallery_path: str | Path | None = None) -> dict:
    """Enrol the first face of each photo (the index ranks a photo's faces by the main-face rule) under its
    folder's name; photos already enrolled are skipped.

    Photos directly inside a folder that was indexed (not in a sub-folder), or in a folder whose name is not an
    acceptable person's name (:func:`facetwin.core.validate.person_name`), have no person: left out and counted
    as ``unnamed``. The index is read and checked before the gallery is opened.
    ``gallery_path`` defaults to the index model's default gallery (the one ``facetwin serve`` uses).
    """
    from facetwin.gallery.location import default_gallery
    from facetwin.gallery.store import Gallery
    from facetwin.loading import is_run_dir

    store = IndexStore(index_dir)
    table = store.read_faces(["path", "sha256", "face", "embedding"])  # all checked before any gallery is touched
    vectors = matrix(table, "embedding")
    roots = set(store.manifest.get("roots", []))  # the folders given to facetwin index, below the archive root
    rows: dict[str, list[tuple[int, str]]] = defaultdict(list)
    unnamed = 0
    for row, (path, digest, face) in enumerate(zip(*(table[c].to_pylist() for c in ("path", "sha256", "face")),
                                                   strict=True)):
        if face != 0:
            continue
        folder = posixpath.dirname(path) or "."
        person = _person(posixpath.basename(folder)) if folder not in roots and folder != "." else None
        if person is None:
            unnamed += 1
        else:
            rows[person].append((row, digest))
    model = index_model(index_dir, store.model_info)
    if gallery_path is None:
        gallery_path = default_gallery(model.source, model.fingerprint, is_run=is_run_dir(model.source))
    gallery = Gallery(gallery_path, model)
    enrolled = gallery.sources()
    people: dict[str, list] = defaultdict(list)
    digests: dict[str, list] = defaultdict(list)
    skipped = 0
    for person, found in rows.items():
        for row, digest in found:
            if (person, digest) in enrolled:
                skipped += 1
                continue
            people[person].append(vectors[row])
            digests[person].append(digest)
    added = gallery.enroll_many({p: np.stack(v) for p, v in people.items()}, digests) if people else 0
    return {"gallery": str(gallery.path), "people": len(people), "enrolled": int(added), "already_enrolled": skipped,
            "unnamed": unnamed}


def _person(folder: str) -> str | None:
    """The person a folder is named after, or None when its name is not an acceptable person's name."""
    try:
        return person_name(folder) if folder else None
    except FacetwinError:
        return None


__all__ = ["import_index"]
