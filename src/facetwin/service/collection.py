"""The Collection view's endpoints (``facetwin serve --index INDEX_DIR``): clusters of the index, biggest first,
face thumbnails cut from the photos on the fly (nothing is copied or stored), naming, merging, re-clustering.

- ``GET /v1/clusters?offset=&limit=&faces=``: summary and one page of clusters, each with up to ``faces`` face ids;
- ``GET /v1/faces/{face_id}/thumbnail``: a JPEG of that face, cut from its photo now;
- ``POST /v1/clusters/{id}/name`` (form ``name``), ``POST /v1/clusters/merge`` (form ``ids``: "3,7"),
  ``POST /v1/clusters/run``: cluster the faces added since the last run.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from facetwin.collection import cluster_store, people
from facetwin.collection.index_faces import IndexFaces, read_faces
from facetwin.errors import FacetwinError
from facetwin.service.http_errors import ServiceError, web_message

THUMB = 112
MARGIN = 0.25  # the thumbnail shows the face box grown by a quarter on every side


class CollectionView:
    """One index: its faces (paths and boxes, reloaded when the shards change) and its cluster table."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()
        self._faces: tuple[tuple, IndexFaces] | None = None
        self.faces()  # a bad index fails at start-up, not on the first page view

    def faces(self) -> IndexFaces:
        stamp = tuple((p.name, p.stat().st_mtime_ns) for p in sorted((self.root / "shards").glob("shard-*.parquet")))
        with self._lock:
            if self._faces is None or self._faces[0] != stamp:
                self._faces = (stamp, read_faces(self.root, embeddings=False))
            return self._faces[1]

    def page(self, offset: int, limit: int, per_cluster: int) -> dict:
        table = cluster_store.load(self.root)
        summary = people.summary(self.root, table) if len(table.face_ids) else {
            "faces": len(self.faces()), "clusters": 0, "named": 0, "noise": 0, "threshold": None, "list": []}
        chosen = summary.pop("list")[offset : offset + limit]
        order = np.argsort(table.clusters, kind="stable")
        sorted_clusters = table.clusters[order]
        for c in chosen:
            lo, hi = np.searchsorted(sorted_clusters, [c["id"], c["id"] + 1])
            c["face_ids"] = table.face_ids[order[lo : min(hi, lo + per_cluster)]].tolist()
        return {**summary, "offset": offset, "clustered": bool(len(table.face_ids)), "items": chosen}

    def thumbnail(self, face_id: int) -> bytes:
        from PIL import Image

        from facetwin.vision.io import load_image

        faces = self.faces()
        pos = int(np.searchsorted(faces.face_ids, face_id))
        if pos >= len(faces) or faces.face_ids[pos] != face_id:
            raise ServiceError(404, f"the index has no face {face_id}.")
        rgb = load_image(faces.paths[pos])
        x, y, w, h = (float(v) for v in faces.boxes[pos])
        side = max(w, h) * (1 + 2 * MARGIN)
        cx, cy = x + w / 2, y + h / 2
        box = tuple(int(round(v)) for v in (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2))
        image = Image.fromarray(rgb).crop(box).resize((THUMB, THUMB), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=85)
        return out.getvalue()


router = APIRouter(prefix="/v1")


def _view(request: Request) -> CollectionView:
    view = getattr(request.app.state, "collection", None)
    if view is None:
        raise ServiceError(503, "this server has no index; start it with --index INDEX_DIR for the Collection view.")
    return view


async def _call(fn, *args):
    try:
        return await run_in_threadpool(fn, *args)
    except FacetwinError as exc:
        raise ServiceError(422, web_message(str(exc))) from None


@router.get("/clusters", summary="Clusters of the index, biggest first")
async def clusters(request: Request, offset: int = 0, limit: int = 50, faces: int = 12):
    limit, faces = max(1, min(limit, 500)), max(0, min(faces, 200))
    return await _call(_view(request).page, max(0, offset), limit, faces)


@router.get("/faces/{face_id}/thumbnail", summary="A face of the index, cut from its photo now (JPEG)")
async def thumbnail(request: Request, face_id: int):
    data = await _call(_view(request).thumbnail, face_id)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=300"})


@router.post("/clusters/{cluster_id}/name", summary="Name a cluster (an empty name removes it)")
async def name_cluster(request: Request, cluster_id: int, name: Annotated[str, Form()] = ""):
    if len(name) > 200:
        raise ServiceError(400, "a name has at most 200 characters.")
    return await _call(people.name, _view(request).root, cluster_id, name)


@router.post("/clusters/merge", summary="Merge clusters into the first of them")
async def merge_clusters(request: Request, ids: Annotated[str, Form()]):
    try:
        wanted = [int(v) for v in ids.replace(",", " ").split()]
    except ValueError:
        raise ServiceError(400, f"ids must be cluster numbers separated by commas, not {ids!r}.") from None
    return await _call(people.merge, _view(request).root, wanted)


@router.post("/clusters/run", summary="Cluster the faces added to the index since the last run")
async def run_clustering(request: Request):
    result = await _call(people.cluster_index, _view(request).root)
    result.pop("list", None)
    return result
