"""The service's endpoints: thin HTTP wrappers over an injected :class:`Model` and :class:`Gallery`.

Uploads are checked from their headers first (``limits.py``), decoded in the thread pool inside the
server-wide pixel budget, and reduced to face crops; model work runs through :attr:`Backend.workers`
(``workers.py``: one call at a time, model replicas, or micro-batched embeddings). Gallery I/O never runs there:
it goes through :meth:`Backend.io`, where a gallery that stays locked becomes 503 with ``Retry-After``.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from facetwin.core.jsonsafe import json_safe
from facetwin.core.validate import person_name
from facetwin.errors import FacetwinError
from facetwin.gallery import Gallery
from facetwin.gallery.db import GalleryBusy
from facetwin.gallery.results import IDENTIFY_TOP_K, MAX_IDENTIFY_TOP_K
from facetwin.loading import is_run_dir
from facetwin.model import Model
from facetwin.service.http_errors import ServiceError, error_responses, web_message
from facetwin.service.limits import Limits, PixelBudget, Upload, read_uploads
from facetwin.service.security import key_matches
from facetwin.service.workers import Workers
from facetwin.vision.io import load_image

RETRY_AFTER = "2"


class Backend:
    """What the endpoints work on: the model, the gallery (optional), the limits, the pixel budget and the
    workers that run model calls (``lock`` mode without ``workers``)."""

    def __init__(
        self, model: Model, gallery: Gallery | None, max_upload_bytes: int, api_key: str | None,
        limits: Limits | None = None, workers: Workers | None = None,
    ) -> None:
        self.model = model
        self.gallery = gallery
        self.max_upload_bytes = int(max_upload_bytes)
        self.api_key = api_key
        self.limits = limits or Limits()
        self.budget = PixelBudget(self.limits.decoding_pixels)
        self.decoding = threading.BoundedSemaphore(self.limits.decodes)
        self.workers = workers or Workers(model)
        self.lock = threading.Lock()  # for a gallery whose model is not ``model``
        self.private: list[Path] = [gallery.path] if gallery is not None else []  # shown by name, never in full

    async def run(self, method, *args, using: Model | None = None, timing: dict | None = None, **kwargs):
        """``model.method(*args, **kwargs)`` (``method`` a name; a callable is called as it is) in the thread pool
        on a model the workers lend (``using``: a model other than the service's, run under :attr:`lock`);
        a FacetwinError becomes a 422."""

        def timed(model: Model):
            start = time.perf_counter()
            try:
                return (getattr(model, method) if isinstance(method, str) else method)(*args, **kwargs)
            finally:
                if timing is not None:
                    timing["seconds"] = time.perf_counter() - start

        def locked():
            if using is None or using is self.model:
                return self.workers.call(timed)
            with self.lock:
                return timed(using)

        try:
            return await run_in_threadpool(locked)
        except FacetwinError as exc:  # the images decoded: what is left is a photo without a face
            raise ServiceError(422, self.web(str(exc))) from None

    async def io(self, fn, *args, **kwargs):
        """A gallery call in the thread pool, never under the model lock; busy → 503 + Retry-After."""
        try:
            return await run_in_threadpool(fn, *args, **kwargs)
        except GalleryBusy as exc:
            raise ServiceError(503, self.web(str(exc)), {"Retry-After": RETRY_AFTER}) from None
        except FacetwinError as exc:
            status = 404 if "no person named" in str(exc) else 500
            raise ServiceError(status, self.web(str(exc))) from None

    def web(self, message: str) -> str:
        """A library sentence as a web answer: the gallery and index by name only, no command-line advice."""
        return web_message(message, tuple(self.private))

    def need_gallery(self) -> Gallery:
        if self.gallery is None:
            raise ServiceError(503, "this server has no gallery, so it cannot enroll, identify or list people.")
        return self.gallery

    async def decode(self, upload: Upload):
        """The RGB array of a checked upload (call inside a budget reservation)."""
        def bounded():
            with self.decoding:
                return load_image(upload.data, upload.label, max_pixels=self.limits.image_pixels)

        try:
            return await run_in_threadpool(bounded)
        except FacetwinError as exc:
            status = 413 if "pixels, more than" in str(exc) or "decompression bomb" in str(exc) else 415
            raise ServiceError(status, str(exc)) from None

    async def crop(self, model: Model, upload: Upload):
        """Decode one upload and keep only its main face's crop (the model's face rule; the photo is dropped
        here)."""
        async with self.budget.reserve(upload.pixels):
            rgb = await self.decode(upload)
            size = {"width": int(rgb.shape[1]), "height": int(rgb.shape[0])}
            crop = (await self.run("face_crops", rgb, using=model, no_face="error", name=upload.label))[0]
            del rgb
        return crop, size


def shown_source(model: Model) -> str:
    """The model as a web answer names it: a backbone name, or a trained run by its folder's name (never the
    server's path to it)."""
    return Path(model.source).name if is_run_dir(model.source) else model.source


def backend(request: Request) -> Backend:
    return request.app.state.backend


Service = Annotated[Backend, Depends(backend)]
router = APIRouter()


def _size(rgb: np.ndarray) -> dict:
    return {"width": int(rgb.shape[1]), "height": int(rgb.shape[0])}


@router.get("/healthz", summary="Liveness and what the server runs", responses=error_responses(401))
async def healthz(svc: Service, request: Request):
    """Public; with an API key configured, only a caller that sends it learns more than ``status``."""
    if svc.api_key is not None and not key_matches(dict(request.headers), svc.api_key):
        return {"status": "ok", "api_key_required": True}
    model = svc.model
    return {
        "status": "ok",
        "model": shown_source(model),
        "fingerprint": model.fingerprint,
        "distance": model.distance,
        "threshold": model.threshold if math.isfinite(model.threshold) else None,
        "gallery": svc.gallery is not None,
        "max_upload_bytes": svc.max_upload_bytes,
        "limits": vars(svc.limits),
        "workers": svc.workers.describe(),
        "api_key_required": svc.api_key is not None,
    }


@router.post(
    "/v1/verify", summary="Are the two photos the same person?", responses=error_responses(400, 401, 413, 415, 422, 503)
)
async def verify(
    svc: Service,
    a: Annotated[UploadFile, File(description="first photo")],
    b: Annotated[UploadFile, File(description="second photo")],
):
    """The main face of each photo (the most prominent near the centre) is detected, aligned and embedded; ``same``
    is ``distance <= threshold``.

    ``faces`` gives, per photo, how many faces were found (``faces_found``), the box ``[x, y, w, h]`` of the one
    used in the photo's pixels, the detector score and the photo's ``width`` and ``height``.
    """
    model = svc.model
    if not math.isfinite(model.threshold):
        raise ServiceError(503, f"model {shown_source(model)} has no decision threshold to tell same from different.")
    ua, ub = await read_uploads([a], "a", svc.limits) + await read_uploads([b], "b", svc.limits)
    if ua.pixels + ub.pixels > svc.limits.request_pixels:
        raise ServiceError(
            413, f"the two photos have {ua.pixels + ub.pixels:,} pixels in all, more than the "
            f"{svc.limits.request_pixels:,} allowed per request."
        )
    timing: dict = {}
    async with svc.budget.reserve(ua.pixels + ub.pixels):
        rgb_a, rgb_b = await svc.decode(ua), await svc.decode(ub)
        result = await svc.run("verify", rgb_a, rgb_b, names=(ua.label, ub.label), timing=timing)
        sizes = [_size(rgb_a), _size(rgb_b)]
        del rgb_a, rgb_b
    doc = json_safe(result)
    for face, size in zip(doc["faces"], sizes, strict=True):
        face.update(size)
    doc["model"] = shown_source(model)
    doc["seconds"] = round(timing["seconds"], 4)  # detection + embedding (decoding and queueing excluded)
    return doc


@router.post(
    "/v1/embed",
    summary="The embedding of the main face of a photo",
    responses=error_responses(400, 401, 413, 415, 422),
)
async def embed(svc: Service, image: Annotated[UploadFile, File(description="a photo")]):
    model = svc.model
    (upload,) = await read_uploads([image], "image", svc.limits)
    crop, size = await svc.crop(model, upload)
    vector = (await svc.run("embed_crops", crop.crop[None]))[0]
    face = json_safe(crop)
    face.update(size)
    return {
        "embedding": [float(v) for v in vector],
        "dim": int(vector.shape[0]),
        "distance": model.distance,
        "face": face,
        "model": shown_source(model),
        "fingerprint": model.fingerprint,
    }


@router.post(
    "/v1/identify", summary="Who in the gallery is this?", responses=error_responses(400, 401, 413, 415, 422, 503)
)
async def identify(
    svc: Service,
    image: Annotated[UploadFile, File(description="a photo")],
    top_k: Annotated[int, Form(ge=1, le=MAX_IDENTIFY_TOP_K, description="how many candidates")] = IDENTIFY_TOP_K,
):
    gallery = svc.need_gallery()
    (upload,) = await read_uploads([image], "image", svc.limits)
    crop, size = await svc.crop(gallery.model, upload)
    vector = (await svc.run("embed_crops", crop.crop[None], using=gallery.model))[0]
    result = await svc.io(gallery.search, vector, top_k=top_k)
    result.face = crop.to_dict()
    doc = json_safe(result)
    doc["file"] = upload.label
    doc.update(size)
    doc["face"].update(size)
    return doc


@router.post(
    "/v1/people/{person}/images",
    summary="Enroll photos of a person",
    responses=error_responses(400, 401, 413, 415, 422, 503),
)
async def enroll(
    svc: Service,
    person: str,
    images: Annotated[list[UploadFile], File(description="one or more photos of the person")],
):
    """All photos or none: a photo without a face refuses the whole request, naming the file."""
    gallery = svc.need_gallery()
    try:
        person = person_name(person)
    except FacetwinError as exc:
        raise ServiceError(400, str(exc)) from None
    if len(images) > svc.limits.images_per_enroll:
        raise ServiceError(
            413, f"{len(images)} photos in one request; at most {svc.limits.images_per_enroll} are accepted."
        )
    uploads = await read_uploads(images, "images", svc.limits)
    crops = [(await svc.crop(gallery.model, upload))[0].crop for upload in uploads]  # one photo decoded at a time
    vectors = await svc.run("embed_crops", np.stack(crops), using=gallery.model)
    added = await svc.io(gallery.enroll_embeddings, person, vectors, [u.sha256 for u in uploads])
    return {"person": person, "enrolled": int(added), "already_enrolled": len(uploads) - int(added),
            "files": [u.label for u in uploads]}


@router.get("/v1/people", summary="The people in the gallery", responses=error_responses(401, 503))
async def people(svc: Service):
    gallery = svc.need_gallery()
    return {"people": json_safe(await svc.io(gallery.people))}


@router.delete(
    "/v1/people/{person}", summary="Remove a person and their embeddings", responses=error_responses(401, 404, 503)
)
async def remove(svc: Service, person: str):
    """Erased for good (see ``Gallery.remove``); 503 with Retry-After when the gallery stays busy."""
    gallery = svc.need_gallery()
    removed = await svc.io(gallery.remove, person)
    return {"person": person, "removed": int(removed)}


@router.get("/v1/gallery", summary="Gallery statistics", responses=error_responses(401, 503))
async def gallery_stats(svc: Service):
    gallery = svc.need_gallery()
    doc = json_safe(await svc.io(gallery.stats))
    doc["gallery"] = gallery.path.name  # never the server's folders
    return doc
