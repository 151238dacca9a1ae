"""The service's endpoints: thin HTTP wrappers over an injected :class:`Model` and :class:`Gallery`.

Every endpoint decodes uploads in the thread pool, then does its model work in one call under
:attr:`Backend.lock` (one model call at a time: the CPU is the bound, not the event loop). Gallery
calls go through :class:`facetwin.gallery.Gallery`'s own methods.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from facetwin.core.jsonsafe import json_safe
from facetwin.errors import FacetwinError
from facetwin.gallery import Gallery
from facetwin.model import Model
from facetwin.service.http_errors import ServiceError, error_responses, web_message
from facetwin.vision.io import load_image


class Backend:
    """What the endpoints work on: the model, the gallery (optional) and the lock that serialises model calls."""

    def __init__(self, model: Model, gallery: Gallery | None, max_upload_bytes: int, api_key: str | None) -> None:
        self.model = model
        self.gallery = gallery
        self.max_upload_bytes = int(max_upload_bytes)
        self.api_key = api_key
        self.lock = threading.Lock()  # measured: 2 concurrent model calls on 2 cores gave no more throughput

    async def run(self, fn, *args, timing: dict | None = None, **kwargs):
        """``fn(*args, **kwargs)`` in the thread pool under the model lock; a FacetwinError becomes a 422."""

        def locked():
            with self.lock:
                start = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    if timing is not None:
                        timing["seconds"] = time.perf_counter() - start

        try:
            return await run_in_threadpool(locked)
        except FacetwinError as exc:  # the images decoded: what is left is a photo without a face
            raise ServiceError(422, web_message(str(exc))) from None

    def need_gallery(self) -> Gallery:
        if self.gallery is None:
            raise ServiceError(503, "this server has no gallery; start it with --gallery FILE to enroll and identify.")
        return self.gallery


def backend(request: Request) -> Backend:
    return request.app.state.backend


Service = Annotated[Backend, Depends(backend)]
router = APIRouter()


def _label(upload: UploadFile, field: str) -> str:
    return Path(upload.filename or "").name or f"the uploaded '{field}' file"


async def decode(upload: UploadFile, field: str) -> tuple[np.ndarray, str, str]:
    """``(rgb, label, sha256)`` of an upload; 415 when it is not an image, 413 when it is too large to decode."""
    label = _label(upload, field)
    data = await upload.read()
    if not data:
        raise ServiceError(415, f"{label}: the upload is empty, not an image.")
    try:
        rgb = await run_in_threadpool(load_image, data, label)
    except FacetwinError as exc:
        message = str(exc)
        status = 413 if "pixels, more than" in message or "decompression bomb" in message else 415
        raise ServiceError(status, message) from None
    return rgb, label, hashlib.sha256(data).hexdigest()


def _size(rgb: np.ndarray) -> dict:
    return {"width": int(rgb.shape[1]), "height": int(rgb.shape[0])}


@router.get("/healthz", summary="Liveness and what the server runs", responses=error_responses(401))
async def healthz(svc: Service):
    model = svc.model
    return {
        "status": "ok",
        "model": model.source,
        "fingerprint": model.fingerprint,
        "distance": model.distance,
        "threshold": model.threshold if math.isfinite(model.threshold) else None,
        "gallery": svc.gallery is not None,
        "max_upload_bytes": svc.max_upload_bytes,
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
    """The largest face of each photo is detected, aligned and embedded; ``same`` is ``distance <= threshold``.

    ``faces`` gives, per photo, the box ``[x, y, w, h]`` in the photo's pixels, the detector score and
    the photo's ``width`` and ``height``.
    """
    model = svc.model
    if not math.isfinite(model.threshold):
        raise ServiceError(
            503, f"model {model.source} has no decision threshold; serve a trained run (--model RUN_DIR)."
        )
    (rgb_a, label_a, _), (rgb_b, label_b, _) = await decode(a, "a"), await decode(b, "b")
    timing: dict = {}
    result = await svc.run(model.verify, rgb_a, rgb_b, names=(label_a, label_b), timing=timing)
    doc = json_safe(result)
    for face, rgb in zip(doc["faces"], (rgb_a, rgb_b), strict=True):
        face.update(_size(rgb))
    doc["model"] = model.source
    doc["seconds"] = round(timing["seconds"], 4)  # detection + embedding (decoding and queueing excluded)
    return doc


@router.post(
    "/v1/embed",
    summary="The embedding of the largest face of a photo",
    responses=error_responses(400, 401, 413, 415, 422),
)
async def embed(svc: Service, image: Annotated[UploadFile, File(description="a photo")]):
    rgb, label, _ = await decode(image, "image")
    model = svc.model

    def work():
        crop = model.face_crops(rgb, no_face="error", name=label)[0]
        return crop, model.embed_crops(crop.crop[None])[0]

    crop, vector = await svc.run(work)
    face = json_safe(crop)
    face.update(_size(rgb))
    return {
        "embedding": [float(v) for v in vector],
        "dim": int(vector.shape[0]),
        "distance": model.distance,
        "face": face,
        "model": model.source,
        "fingerprint": model.fingerprint,
    }


@router.post(
    "/v1/identify", summary="Who in the gallery is this?", responses=error_responses(400, 401, 413, 415, 422, 503)
)
async def identify(
    svc: Service,
    image: Annotated[UploadFile, File(description="a photo")],
    top_k: Annotated[int, Form(ge=1, le=100, description="how many candidates")] = 3,
):
    gallery = svc.need_gallery()
    rgb, label, _ = await decode(image, "image")
    doc = json_safe(await svc.run(gallery.identify, rgb, top_k=top_k, name=label))
    doc["file"] = label
    doc.update(_size(rgb))
    if doc.get("face"):
        doc["face"].update(_size(rgb))
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
    person = person.strip()
    if not person:
        raise ServiceError(400, "the person's name is empty.")
    decoded = [await decode(upload, "images") for upload in images]
    rgbs, labels, digests = (list(column) for column in zip(*decoded, strict=True))
    added = await svc.run(gallery.enroll, person, rgbs, names=labels, digests=digests)
    return {"person": person, "enrolled": int(added), "files": labels}


@router.get("/v1/people", summary="The people in the gallery", responses=error_responses(401, 503))
async def people(svc: Service):
    gallery = svc.need_gallery()
    return {"people": json_safe(await svc.run(gallery.people))}


@router.delete(
    "/v1/people/{person}", summary="Remove a person and their embeddings", responses=error_responses(401, 404, 503)
)
async def remove(svc: Service, person: str):
    gallery = svc.need_gallery()
    known = {p.name for p in await svc.run(gallery.people)}
    if person not in known:
        raise ServiceError(404, f"no person named '{person}' in the gallery.")
    removed = await svc.run(gallery.remove, person)
    return {"person": person, "removed": int(removed)}


@router.get("/v1/gallery", summary="Gallery statistics", responses=error_responses(401, 503))
async def gallery_stats(svc: Service):
    gallery = svc.need_gallery()
    return json_safe(await svc.run(gallery.stats))
