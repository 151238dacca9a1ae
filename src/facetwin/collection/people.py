"""The people of an index: cluster its faces (again, incrementally), name, merge, split, export to a gallery.

``cluster_index`` is what ``facetwin cluster INDEX_DIR`` runs. The first run clusters every face; later runs keep
every existing cluster and its id, let the faces added since (and earlier noise) join the clusters they match, and
make new clusters of the rest (:func:`facetwin.collection.cluster.update`). ``fresh=True`` re-clusters everything
except the named clusters. Named, merged and split clusters therefore survive every later run.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from facetwin.collection import cluster_store as store
from facetwin.collection.cluster import (
    MERGE_PROBABILITY,
    MIN_FACES,
    NOISE,
    average_linkage,
    merge_distance,
    relabel,
    update,
)
from facetwin.collection.cluster_graph import knn_graph
from facetwin.collection.index_faces import IndexFaces, read_faces
from facetwin.errors import FacetwinError

METHOD = "average linkage on the k-NN graph, cut where the model's calibrated P(same) is 0.97"
SPLIT_SCALE = 0.8  # an automatic split re-cuts the cluster's own faces at 0.8 × the merge distance


def _scale(faces: IndexFaces) -> tuple[str, float, float]:
    """The index model's distance, threshold and merge distance (from its calibration: the manifest's ``slope``
    and ``intercept`` when it records them, else the model loaded from its ``source``)."""
    model = faces.model
    if model.get("distance") not in ("cosine", "euclidean") or not isinstance(model.get("threshold"), int | float):
        raise FacetwinError(f"{faces.root / 'manifest.json'}: the manifest names no model distance and threshold.")
    slope, intercept = model.get("slope"), model.get("intercept")
    if slope is None or intercept is None:
        slope, intercept = _calibration(model)
    threshold = float(model["threshold"])
    return model["distance"], threshold, merge_distance(threshold, slope, intercept)


def _calibration(model: dict) -> tuple[float | None, float | None]:
    """Logistic calibration of the model that made the index (None, None when it cannot be loaded here)."""
    return _calibration_of(str(model.get("source") or ""), str(model.get("fingerprint")))


@functools.lru_cache(maxsize=8)
def _calibration_of(source: str, fingerprint: str) -> tuple[float | None, float | None]:
    from facetwin.loading import load

    try:
        loaded = load(source)
    except FacetwinError:
        return None, None
    if loaded.fingerprint != fingerprint:
        return None, None
    return loaded.slope, loaded.intercept


def _cluster_index(root: str | Path, *, min_faces: int = MIN_FACES, fresh: bool = False) -> dict:
    """Cluster the faces of the index at ``root`` (incrementally when it was clustered before); saves and
    returns a summary."""
    if min_faces < 1:
        raise FacetwinError(f"--min-faces must be at least 1, not {min_faces}.")
    faces = read_faces(root)
    distance, threshold, cut = _scale(faces)
    old = store.load(root)
    fingerprint = faces.model.get("fingerprint")
    if old.meta.get("model_fingerprint") not in (None, fingerprint):
        fresh = True  # the index was rebuilt with another model: the old assignment means nothing, names do
    seeds = old.lookup(faces.face_ids)
    if fresh:
        seeds[~np.isin(seeds, list(old.names))] = NOISE
    labels = update(faces.embeddings, distance, cut, seeds, old.next_id, min_faces=min_faces)
    next_id = max(old.next_id, int(labels.max(initial=-1)) + 1)
    table = store.ClusterTable(
        faces.face_ids, labels, dict(old.names), next_id,
        {"model_fingerprint": fingerprint, "distance": distance, "threshold": threshold, "merge_distance": cut,
         "merge_probability": MERGE_PROBABILITY, "method": METHOD, "min_faces": min_faces},
    )
    store.save(root, table)
    result = summary(root, table)
    result.update(new_faces=int((~np.isin(faces.face_ids, old.face_ids)).sum()),
                  joined=int(((seeds == NOISE) & (labels >= 0) & (labels < old.next_id)).sum()),
                  new_clusters=len(set(labels[labels >= old.next_id].tolist())))
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
    table = _loaded(root)
    table.check(cluster_id, store.path_of(root))
    person = " ".join(str(person).split())
    if person:
        table.names[cluster_id] = person
    else:
        table.names.pop(cluster_id, None)
    store.save(root, table)
    return {"id": cluster_id, "name": person or None, "faces": table.sizes()[cluster_id]}


def _merge(root: str | Path, cluster_ids: list[int]) -> dict:
    """Merge clusters into the first one; it keeps its name, else takes the first name among the others."""
    table = _loaded(root)
    if len(set(cluster_ids)) < 2:
        raise FacetwinError("merge needs at least two different cluster ids.")
    for cid in cluster_ids:
        table.check(cid, store.path_of(root))
    target = cluster_ids[0]
    table.clusters[np.isin(table.clusters, cluster_ids)] = target
    named = [table.names[c] for c in cluster_ids if c in table.names]
    if named:
        table.names[target] = named[0]
    for cid in cluster_ids[1:]:
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
        faces = read_faces(root)
        distance, _, cut = _scale(faces)
        pos = np.searchsorted(faces.face_ids, table.face_ids[members])
        graph = knn_graph(faces.embeddings[pos], distance)
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
    faces = read_faces(root)
    clusters = table.lookup(faces.face_ids)
    out: dict[str, tuple[np.ndarray, list[str]]] = {}
    for cid, person in table.names.items():
        rows = np.flatnonzero(clusters == cid)
        if len(rows):
            vecs, digests = out.get(person, (np.zeros((0, faces.embeddings.shape[1]), np.float32), []))
            out[person] = (np.vstack([vecs, faces.embeddings[rows]]), digests + [faces.digests[r] for r in rows])
    return out


def export_gallery(root: str | Path, gallery_path: str | Path) -> dict:
    """Enrol every named cluster into a gallery under its name (photos already enrolled for that name skipped)."""
    from facetwin.gallery import Gallery

    model = read_faces(root, embeddings=False).model
    gallery = Gallery(gallery_path, model.get("source") or None)
    if gallery.model.fingerprint != model.get("fingerprint"):
        raise FacetwinError(f"{gallery_path}: this gallery's model differs from the model of the index {root}.")
    known = gallery.sources()
    people, sources, skipped = {}, {}, 0
    for person, (vecs, digests) in named_faces(root).items():
        new = [k for k, d in enumerate(digests) if (person, d) not in known]
        skipped += len(digests) - len(new)
        if new:
            people[person], sources[person] = vecs[new], [digests[k] for k in new]
    added = gallery.enroll_many(people, sources) if people else 0
    return {"people": len(people), "enrolled": int(added), "already_enrolled": skipped}



def _locked(root):
    """The clusters lock of an index (checked to be an index first, so a wrong folder gets the index error)."""
    if not (Path(root) / "manifest.json").is_file():
        read_faces(root)  # raises: not a facetwin index
    return store.locked(root)


def cluster_index(root: str | Path, *, min_faces: int = MIN_FACES, fresh: bool = False) -> dict:
    """Cluster the faces of the index at ``root`` (incrementally when it was clustered before); saves and
    returns a summary."""
    with _locked(root):
        return _cluster_index(root, min_faces=min_faces, fresh=fresh)


def name(root: str | Path, cluster_id: int, person: str) -> dict:
    """Name a cluster (an empty name removes the name)."""
    with _locked(root):
        return _name(root, cluster_id, person)


def merge(root: str | Path, cluster_ids: list[int]) -> dict:
    """Merge clusters into the first one; it keeps its name, else takes the first name among the others."""
    with _locked(root):
        return _merge(root, cluster_ids)


def split(root: str | Path, cluster_id: int, face_ids: list[int] | None = None) -> list[dict]:
    """Split a cluster: the given faces become a new cluster, or (none given) the cluster is re-cut at
    ``SPLIT_SCALE`` × the threshold; the biggest part keeps the id and the name."""
    with _locked(root):
        return _split(root, cluster_id, face_ids)
