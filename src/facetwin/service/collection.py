"""The Collection view's endpoints (``facetwin serve --index INDEX_DIR``): clusters of the index, biggest first,
face thumbnails cut from the photos on the fly (nothing is copied or stored), naming, merging, re-clustering.

- ``GET /v1/clusters?offset=&limit=&faces=``: summary and one page of clusters, each with up to ``faces`` face ids;
- ``GET /v1/faces/{face_id}/thumbnail``: a JPEG of that face, cut from its photo now;
- ``POST /v1/clusters/{id}/name`` (form ``name``), ``POST /v1/clusters/merge`` (form ``ids``: "3,7"),
  ``POST /v1/clusters/run``: cluster the faces added since the last run.

What a request may cost is bounded: a thumbnail reads its photo only while it is still the indexed one, inside the
index's roots (:mod:`facetwin.collection.originals`); a large JPEG is decoded at a reduced scale, everything decoded
counts against the server's pixel budget (the uploads' limits), ``THUMBNAILS_AT_ONCE`` are made at once and the last
``THUMBNAIL_CACHE`` are kept. Cluster routes take small bodies (``http_errors.SMALL_BODY``), at most ``MAX_MERGE``
ids, names by the rules of person names, wait at most ``LOCK_WAIT`` seconds for a clustering run (then 503), and
only one run goes at a time. Answers name no server folder.
"""

from __future__ import annotations

import asyncio
import io
import math
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from facetwin.collection import cluster_store, people
from facetwin.collection.index_faces import IndexFaces, read_faces
from facetwin.collection.originals import Unavailable, read_original, resolved_roots, signature
from facetwin.collection.verified import identity
from facetwin.core.validate import person_name
from facetwin.errors import FacetwinError
from facetwin.service.http_errors import ServiceError, web_message

THUMB = 112
MARGIN = 0.25  # the thumbnail shows the face box grown by a quarter on every side
THUMBNAILS_AT_ONCE = 2
THUMBNAIL_CACHE = 512  # thumbnails kept (about 4 kB each), keyed by face and by the photo file's identity
MAX_MERGE = 1000  # clusters in one merge request
LOCK_WAIT = 5.0  # seconds a change waits for a clustering run that holds the table, then 503
JPEG = b"\xff\xd8\xff"
RETRY = {"Retry-After": "5"}


class CollectionView:
    """One index: its faces (paths and boxes, reloaded when the shards change), its cluster table, and the
    thumbnails made lately."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()
        self._faces: tuple[tuple, IndexFaces] | None = None
        self._thumbs: OrderedDict[int, tuple[tuple, bytes]] = OrderedDict()
        self._making: asyncio.Semaphore | None = None
        self._running = threading.Lock()  # one clustering run at a time
        self.faces()  # a bad index (or clusters table) fails at start-up, not on the first page view
        cluster_store.load(self.root)

    def faces(self) -> IndexFaces:
        stamp = identity(self.root / "manifest.json")  # every commit renames a new manifest into place
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

    # ------------------------------------------------------------------------------------------------ thumbnails
    async def thumbnail(self, face_id: int, budget, decoding: threading.Semaphore, max_pixels: int) -> bytes:
        """A JPEG of face ``face_id``: from the cache while its photo file is unchanged, else cut from the photo
        (read only if still the indexed one), decoded inside the server's pixel ``budget``."""
        if self._making is None:
            self._making = asyncio.Semaphore(THUMBNAILS_AT_ONCE)
        path, box, size, digest, roots = await run_in_threadpool(self._face, face_id)
        cached = await run_in_threadpool(self._cached, face_id, path, roots)
        if cached is not None:
            return cached
        async with self._making:
            data, sign = await run_in_threadpool(read_original, path, size, digest, roots, what=f"face {face_id}")
            reduce_to, pixels = _plan(data, box)
            if pixels > max_pixels:
                raise ServiceError(413, f"the photo of face {face_id} would decode to {pixels:,} pixels, more than "
                                        f"the {max_pixels:,} allowed.")
            async with budget.reserve(pixels):
                jpeg = await run_in_threadpool(_cut, data, box, reduce_to, max_pixels, decoding, face_id)
            del data
        with self._lock:
            self._thumbs[face_id] = (sign, jpeg)
            while len(self._thumbs) > THUMBNAIL_CACHE:
                self._thumbs.popitem(last=False)
        return jpeg

    def _face(self, face_id: int) -> tuple[str, np.ndarray, int, str, tuple[str, ...]]:
        faces = self.faces()
        pos = int(np.searchsorted(faces.face_ids, face_id))
        if pos >= len(faces) or faces.face_ids[pos] != face_id:
            raise ServiceError(404, f"the index has no face {face_id}.")
        return (faces.paths[pos], faces.boxes[pos], int(faces.sizes[pos]), faces.digests[pos],
                resolved_roots(faces.roots))

    def _cached(self, face_id: int, path: str, roots: tuple[str, ...]) -> bytes | None:
        """The thumbnail made earlier, if its photo file is still the same file, unchanged, inside the roots."""
        with self._lock:
            hit = self._thumbs.get(face_id)
        if hit is None or signature(path, roots) != hit[0]:
            return None
        return hit[1]

    # -------------------------------------------------------------------------------------------------- changes
    def run(self) -> dict:
        """Cluster the faces added since the last run (one run at a time)."""
        if not self._running.acquire(blocking=False):
            raise ServiceError(409, "the clusters are being updated already; try again when that run has finished.",
                               RETRY)
        try:
            result = people.cluster_index(self.root, wait=LOCK_WAIT)
        finally:
            self._running.release()
        result.pop("list", None)
        return result


def _plan(data: bytes, box: np.ndarray) -> tuple[tuple[int, int] | None, int]:
    """How to decode a photo for one face: the reduced size to ask of a JPEG (the face still at least ``THUMB``
    pixels across) and how many pixels that decodes (a JPEG at 1/2, 1/4 or 1/8 scale, as Pillow's draft mode
    chooses; any other format whole)."""
    from facetwin.vision.io import image_size

    width, height = image_size(data, "the indexed photo")
    side = max(float(box[2]), float(box[3])) * (1 + 2 * MARGIN)
    scale = min(1.0, THUMB / max(side, 1.0))
    target = (max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale)))
    if not data.startswith(JPEG):
        return None, width * height
    fits = min(width // target[0], height // target[1])
    k = next(s for s in (8, 4, 2, 1) if fits >= s)
    return target, math.ceil(width / k) * math.ceil(height / k)


def _cut(data: bytes, box: np.ndarray, reduce_to, max_pixels: int, decoding: threading.Semaphore,
         face_id: int) -> bytes:
    """Decode (reduced), cut the face with its margin, scale to ``THUMB`` and encode as JPEG."""
    from PIL import Image

    from facetwin.vision.io import image_size, load_image

    width, height = image_size(data, "the indexed photo")
    with decoding:
        rgb = load_image(data, f"the photo of face {face_id}", max_pixels=max_pixels, reduce_to=reduce_to)
    turned = (rgb.shape[1] > rgb.shape[0]) != (width > height) and width != height  # EXIF rotated it
    full_w, full_h = (height, width) if turned else (width, height)
    sx, sy = rgb.shape[1] / full_w, rgb.shape[0] / full_h
    x, y, w, h = (float(v) for v in box)
    side = max(w, h) * (1 + 2 * MARGIN)
    cx, cy = x + w / 2, y + h / 2
    crop = tuple(int(round(v)) for v in ((cx - side / 2) * sx, (cy - side / 2) * sy,
                                         (cx + side / 2) * sx, (cy + side / 2) * sy))
    image = Image.fromarray(rgb).crop(crop).resize((THUMB, THUMB), Image.Resampling.LANCZOS)
    del rgb
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85)
    return out.getvalue()


router = APIRouter(prefix="/v1")


def _view(request: Request) -> CollectionView:
    view = getattr(request.app.state, "collection", None)
    if view is None:
        raise ServiceError(503, "this server has no index, so it has no collection to show.")
    return view


async def _call(view: CollectionView, fn, *args, **kwargs):
    """A library call for a route: 404 for an unknown cluster, 503 while a run holds the table, 422 otherwise;
    sentences without server folders or command-line advice."""
    try:
        return await run_in_threadpool(fn, *args, **kwargs)
    except cluster_store.NoCluster as exc:
        raise ServiceError(404, f"this index has no cluster {exc.cluster_id}.") from None
    except cluster_store.ClustersBusy:
        raise ServiceError(503, "the clusters are being updated; try again in a moment.", RETRY) from None
    except Unavailable as exc:
        raise ServiceError(404, str(exc)) from None
    except FacetwinError as exc:
        raise ServiceError(422, web_message(str(exc), (view.root,))) from None


@router.get("/clusters", summary="Clusters of the index, biggest first")
async def clusters(request: Request, offset: int = 0, limit: int = 50, faces: int = 12):
    limit, faces = max(1, min(limit, 500)), max(0, min(faces, 200))
    view = _view(request)
    return await _call(view, view.page, max(0, offset), limit, faces)


@router.get("/faces/{face_id}/thumbnail", summary="A face of the index, cut from its photo now (JPEG)")
async def thumbnail(request: Request, face_id: int):
    view, backend = _view(request), request.app.state.backend
    try:
        data = await view.thumbnail(face_id, backend.budget, backend.decoding, backend.limits.image_pixels)
    except Unavailable as exc:
        raise ServiceError(404, str(exc)) from None
    except FacetwinError as exc:  # the photo is the indexed one but cannot be decoded within the limits
        status = 413 if "pixels, more than" in str(exc) or "too large" in str(exc) else 422
        raise ServiceError(status, web_message(str(exc), (view.root,))) from None
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=300"})


@router.post("/clusters/{cluster_id}/name", summary="Name a cluster (an empty name removes it)")
async def name_cluster(request: Request, cluster_id: int, name: Annotated[str, Form()] = ""):
    if name.strip():
        try:
            name = person_name(name)
        except FacetwinError as exc:
            raise ServiceError(400, str(exc)) from None
    view = _view(request)
    return await _call(view, people.name, view.root, cluster_id, name, wait=LOCK_WAIT)


@router.post("/clusters/merge", summary="Merge clusters into the first of them")
async def merge_clusters(request: Request, ids: Annotated[str, Form()]):
    words = ids.replace(",", " ").split()
    if len(words) > MAX_MERGE:
        raise ServiceError(413, f"{len(words):,} cluster ids in one merge; at most {MAX_MERGE:,} are accepted.")
    try:
        wanted = [int(v) for v in words]
    except ValueError:
        raise ServiceError(400, f"ids must be cluster numbers separated by commas, not {ids[:80]!r}.") from None
    view = _view(request)
    return await _call(view, people.merge, view.root, wanted, wait=LOCK_WAIT)


@router.post("/clusters/run", summary="Cluster the faces added to the index since the last run")
async def run_clustering(request: Request):
    view = _view(request)
    return await _call(view, view.run)
