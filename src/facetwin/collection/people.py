"""The people of an index: cluster its faces (again, incrementally), name, merge, split, export to a gallery.

``cluster_index`` is what ``facetwin cluster INDEX_DIR`` runs (:mod:`facetwin.collection.cluster_run`). The first
run clusters every face; later runs keep every existing cluster and its id, let the faces added since (and earlier
noise next to them) join the clusters they match, and make new clusters of the rest, reading only the new faces.
``fresh=True`` re-clusters everything except the named clusters. Named, merged and split clusters therefore survive
every later run. Cluster names follow the rules of person names (:func:`facetwin.core.validate.person_name`) wherever
they enter, and :func:`describe` says who is likely in each cluster (the nearest person of the model's default
gallery) with a sample photo. Only the faces a step needs are read from the shards.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facetwin.collection import cluster_store as store
from facetwin.collection.cluster import MIN_FACES, NOISE, average_linkage, relabel
from facetwin.collection.cluster_graph import knn_graph
from facetwin.collection.cluster_run import run, scale
from facetwin.collection.index_check import matrix
from facetwin.collection.shards import IndexStore, index_model
from facetwin.core.validate import person_name
from facetwin.errors import FacetwinError

SPLIT_SCALE = 0.8  # an automatic split re-cuts the cluster's own faces at 0.8 × the merge distance
DESCRIBED_FACES = 64  # faces of a cluster read to describe it (its first ones): mean, sample photo, likely person


def _cluster_index(root: str | Path, *, min_faces: int = MIN_FACES, fresh: bool = False) -> dict:
    """Cluster the faces of the index at ``root`` (incrementally when it was clustered before); saves and
    returns a summary."""
    if min_faces < 1:
        raise FacetwinError(f"--min-faces must be at least 1, not {min_faces}.")
    changes = run(root, min_faces=min_faces, fresh=fresh)
    result = summary(root)
    result.update(changes)
    return result


def summary(root: str | Path, table: store.ClusterTable | None = None) -> dict:
    """Clusters (id, name, faces) biggest first, and counts of faces, clusters and noise."""
    table = table if table is not None else _loaded(root)
    sizes = table.sizes()
    clusters = [{"id": cid, "name": table.names.get(cid), "faces": n} for cid, n in sizes.items()]
    return {"faces": len(table.face_ids), "clusters": len(clusters), "named": sum(1 for c in clusters if c["name"]),
            "noise": int((table.clusters == NOISE).sum()), "threshold": table.meta.get("threshold"),
            "merge_distance": table.meta.get("merge_distance"),
            "list": clusters}


def _loaded(root) -> store.ClusterTable:
    table = store.load(root)
    if not len(table.face_ids):
        raise FacetwinError(f"{Path(root)}: the index has no clusters yet (run `facetwin cluster {root}`).")
    return table


def _name(root: str | Path, cluster_id: int, person: str) -> dict:
    """Name a cluster (an empty name removes the name)."""
    person = person_name(person) if str(person).strip() else ""
    table = _loaded(root)
    table.check(cluster_id, store.path_of(root))
    if person:
        table.names[cluster_id] = person
    else:
        table.names.pop(cluster_id, None)
    store.save(root, table)
    return {"id": cluster_id, "name": person or None, "faces": table.sizes()[cluster_id]}


def _merge(root: str | Path, cluster_ids: list[int]) -> dict:
    """Merge clusters into the first one; it keeps its name, else takes the first name among the others."""
    if len(set(cluster_ids)) < 2:
        raise FacetwinError("merge needs at least two different cluster ids.")
    table = _loaded(root)
    table.check(cluster_ids, store.path_of(root))
    target = cluster_ids[0]
    table.clusters[np.isin(table.clusters, cluster_ids)] = target
    named = [table.names[c] for c in dict.fromkeys(cluster_ids) if c in table.names]
    if named:
        table.names[target] = named[0]
    for cid in set(cluster_ids) - {target}:
        table.names.pop(cid, None)
    store.save(root, table)
    return {"id": target, "name": table.names.get(target), "faces": table.sizes()[target]}


def _split(root: str | Path, cluster_id: int, face_ids: list[int] | None = None) -> list[dict]:
    """Split a cluster: the given faces become a new cluster, or (none given) the cluster is re-cut at
    ``SPLIT_SCALE`` × the threshold; the biggest part keeps the id and the name."""
    table = _loaded(root)
    table.check(cluster_id, store.path_of(root))
    members = np.flatnonzero(table.clusters == cluster_id)
    if face_ids:
        part = np.isin(table.face_ids[members], face_ids)
        if part.sum() != len(set(face_ids)):
            raise FacetwinError(f"{store.path_of(root)}: some of the faces given are not in cluster {cluster_id}.")
        parts = part.astype(np.int64)
    else:
        index = IndexStore(root)
        distance, _, cut = scale(index.model_info, Path(root))
        vectors = matrix(index.fetch(table.face_ids[members], ["embedding"]), "embedding")
        graph = knn_graph(vectors, distance)
        i, j, d = graph.edges()
        parts = relabel(average_linkage(len(members), i, j, d, SPLIT_SCALE * cut, radius=graph.radius()), min_faces=1)
    if len(set(parts.tolist())) < 2:
        raise FacetwinError(f"cluster {cluster_id} does not split at a stricter threshold; give the faces to move.")
    sizes = np.bincount(parts)
    keep = int(np.argmax(sizes)) if not face_ids else 0
    ids = [cluster_id]
    for part in sorted(set(parts.tolist()) - {keep}):
        table.clusters[members[parts == part]] = table.next_id
        ids.append(table.next_id)
        table.next_id += 1
    store.save(root, table)
    sizes = table.sizes()
    return [{"id": cid, "name": table.names.get(cid), "faces": sizes[cid]} for cid in ids]


def named_faces(root: str | Path) -> dict[str, tuple[np.ndarray, list[str]]]:
    """Embeddings and photo digests of the faces of every named cluster, by name."""
    table = _loaded(root)
    index = IndexStore(root)
    current = ~index.retired_mask(table.face_ids)
    out: dict[str, tuple[np.ndarray, list[str]]] = {}
    for cid, person in table.names.items():
        ids = table.face_ids[(table.clusters == cid) & current]
        if len(ids):
            rows = index.fetch(ids, ["sha256", "embedding"])
            vecs, digests = out.get(person, (np.zeros((0, rows["embedding"].type.list_size), np.float32), []))
            out[person] = (np.vstack([vecs, matrix(rows, "embedding")]), digests + rows["sha256"].to_pylist())
    return out


def export_gallery(root: str | Path, gallery_path: str | Path) -> dict:
    """Enrol every named cluster into a gallery under its name (photos already enrolled for that name skipped).
    Everything is read and checked before the gallery is opened: a refused export creates or changes no file."""
    from facetwin.gallery import Gallery

    named = named_faces(root)
    if not named:
        raise FacetwinError(f"{Path(root)}: no cluster has a name yet, so there is nothing to export "
                            "(name one with `facetwin cluster name`).")
    gallery = Gallery(gallery_path, index_model(root, IndexStore(root).model_info))
    known = gallery.sources()
    people, sources, skipped = {}, {}, 0
    for person, (vecs, digests) in named.items():
        new = [k for k, d in enumerate(digests) if (person, d) not in known]
        skipped += len(digests) - len(new)
        if new:
            people[person], sources[person] = vecs[new], [digests[k] for k in new]
    added = gallery.enroll_many(people, sources) if people else 0
    return {"people": len(people), "enrolled": int(added), "already_enrolled": skipped}


def _locked(root, wait: float | None):
    """The clusters lock of an index (checked to be an index first, so a wrong folder gets the index error)."""
    if not (Path(root) / "manifest.json").is_file():
        IndexStore(root)  # raises: not a facetwin index
    return store.locked(root, wait)


def cluster_index(root: str | Path, *, min_faces: int = MIN_FACES, fresh: bool = False,
                  wait: float | None = None) -> dict:
    """Cluster the faces of the index at ``root`` (incrementally when it was clustered before); saves and
    returns a summary. ``wait``: seconds to wait for another run holding the table (None: as long as it takes)."""
    with _locked(root, wait):
        return _cluster_index(root, min_faces=min_faces, fresh=fresh)


def name(root: str | Path, cluster_id: int, person: str, *, wait: float | None = None) -> dict:
    """Name a cluster (an empty name removes the name)."""
    with _locked(root, wait):
        return _name(root, cluster_id, person)


def merge(root: str | Path, cluster_ids: list[int], *, wait: float | None = None) -> dict:
    """Merge clusters into the first one; it keeps its name, else takes the first name among the others."""
    with _locked(root, wait):
        return _merge(root, cluster_ids)


def split(root: str | Path, cluster_id: int, face_ids: list[int] | None = None, *,
          wait: float | None = None) -> list[dict]:
    """Split a cluster: the given faces become a new cluster, or (none given) the cluster is re-cut at
    ``SPLIT_SCALE`` × the threshold; the biggest part keeps the id and the name."""
    with _locked(root, wait):
        return _split(root, cluster_id, face_ids)


def describe(
    root: str | Path, clusters: list[dict], *, gallery: str | Path | None = None,
    archive_root: str | Path | None = None,
) -> tuple[list[dict], str | None]:
    """``clusters`` (items of :func:`summary`) with, for each, ``sample``: the photo of its most typical face (of
    its first ``DESCRIBED_FACES``, the one nearest their mean), and ``likely``: the nearest person of ``gallery``
    (default: the index model's default gallery, when there is one) to that mean, with the distance and whether it
    is within the model's threshold (None without a gallery or people); and the gallery used (None: none).
    ``archive_root``: where the archive is now, for the sample photos' paths."""
    if not clusters:
        return clusters, None
    index = IndexStore(root, archive_root=archive_root)
    table = _loaded(root)
    current = ~index.retired_mask(table.face_ids)
    order = np.argsort(table.clusters, kind="stable")  # the rows of each cluster, found by bisection
    ranked = table.clusters[order]
    people = _gallery_of(index, Path(root), gallery)
    cosine = index.model_info.get("distance") == "cosine"
    out = []
    for item in clusters:
        lo, hi = np.searchsorted(ranked, [item["id"], item["id"] + 1])
        ids = table.face_ids[order[lo:hi]]
        ids = ids[current[order[lo:hi]]][:DESCRIBED_FACES]
        if not len(ids):
            out.append({**item, "sample": None, "likely": None})
            continue
        rows = index.fetch(ids, ["path", "embedding"])
        vectors = matrix(rows, "embedding")
        if cosine:
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        centre = vectors.mean(axis=0)
        typical = int(np.argmin(np.linalg.norm(vectors - centre, axis=1)))
        likely = None
        if people is not None:
            found = people.search(centre, top_k=1)
            if found.matches:
                best = found.matches[0]
                likely = {"person": best.person, "distance": round(best.distance, 4),
                          "within_threshold": found.person != "unknown"}
        out.append({**item, "sample": index.absolute(rows["path"][typical].as_py()), "likely": likely})
    return out, str(people.path) if people is not None else None


def _gallery_of(index: IndexStore, root: Path, path: str | Path | None):
    """The gallery to say who is likely in a cluster: ``path``, or the model's default gallery if it exists; None
    when there is none, it is empty or cannot be read."""
    from facetwin.gallery import Gallery
    from facetwin.gallery.location import default_gallery
    from facetwin.loading import is_run_dir

    try:
        loaded = index_model(root, index.model_info)
        if path is None:
            path = default_gallery(loaded.source, loaded.fingerprint, is_run=is_run_dir(loaded.source))
        if not Path(path).is_file():
            return None
        gallery = Gallery(path, loaded, create=False)
        return gallery if gallery.stats()["embeddings"] else None
    except FacetwinError:
        return None
