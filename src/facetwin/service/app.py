"""The facetwin HTTP API and web page (FastAPI; run it with ``facetwin serve``).

Every error is JSON ``{"error": "one sentence"}`` with a status that says what went wrong:

- 400 a form field is missing or malformed;
- 401 an API key is configured (``FACETWIN_API_KEY``) and the call did not send it
  (``X-API-Key: KEY`` or ``Authorization: Bearer KEY``); the page, its assets and ``/docs`` stay public;
- 404 unknown person; 503 no gallery configured (people endpoints) or no decision threshold (verify);
- 413 the request body is over ``max_upload_bytes`` (checked on Content-Length and counted while reading);
- 415 an upload is not an image facetwin can decode; 422 an image has no face.

The model loads once, in :func:`create_app`. Decoding runs in the thread pool; detection, embedding and
gallery work run there too, one call at a time under a lock (the CPU is the bound, not the event loop).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from ..errors import FacetwinError
from ..io import load_image
from .http_errors import (
    DEFAULT_MAX_UPLOAD,
    ServiceError,
    UploadLimit,
    error_response,
    error_responses,
    web_message,
)

STATIC = Path(__file__).resolve().parent / "static"
PUBLIC_PATHS = ("/", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json", "/favicon.ico")


def _jsonable(obj: Any) -> Any:
    """Plain JSON values from dataclasses, numpy values and objects with ``to_dict``."""
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return _jsonable(obj.to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _label(upload: UploadFile, field: str) -> str:
    name = Path(upload.filename or "").name
    return name or f"the uploaded '{field}' file"


def _swagger_assets() -> Path | None:
    """Swagger UI's files from the ``swagger-ui-py`` package, so ``/docs`` works offline (no CDN)."""
    import importlib.util

    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        return None
    static = Path(next(iter(spec.submodule_search_locations))) / "static"
    return static if (static / "swagger-ui-bundle.js").is_file() else None


def create_app(
    model: Any = "sface",
    gallery_path: str | Path | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD,
    api_key: str | None = os.environ.get("FACETWIN_API_KEY"),
    index_path: str | Path | None = None,
) -> FastAPI:
    """The service: ``model`` is a :class:`facetwin.model.Model`, a backbone name or a run directory.

    ``gallery_path`` enables the people endpoints (a :class:`facetwin.gallery.Gallery` file);
    ``api_key`` (default ``$FACETWIN_API_KEY``) makes every API call need that key;
    ``index_path`` (a ``facetwin index`` folder) enables ``/v1/find``.
    """
    if isinstance(model, str | Path):
        from ..model import load

        model = load(model)
    name = model.backbone.name if model.description.get("kind") == "backbone" else str(
        model.description.get("run") or model.description.get("name") or model.backbone.name
    )
    gallery = None
    if gallery_path is not None:
        from ..gallery import Gallery

        gallery = Gallery(gallery_path, model)
    lock = threading.Lock()  # measured: 2 concurrent model calls on 2 cores gave no more throughput
    api_key = api_key or None

    swagger = _swagger_assets()
    app = FastAPI(
        docs_url=None if swagger else "/docs",
        title="facetwin",
        version="1",
        summary="Face verification, embedding and identification on the CPU.",
        description=(
            "Upload photos as multipart form files. Errors are JSON `{\"error\": \"one sentence\"}`: "
            "413 body over the upload limit, 415 not an image, 422 no face found, 401 missing API key "
            "(`X-API-Key` or `Authorization: Bearer`) when the server has one."
        ),
    )
    app.state.model = model
    app.state.gallery = gallery
    app.state.max_upload_bytes = int(max_upload_bytes)
    app.add_middleware(UploadLimit, limit=int(max_upload_bytes))

    # ------------------------------------------------------------------ errors and auth
    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError):
        return error_response(exc.status, exc.message)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else "the request failed."
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such endpoint: {request.method} {request.url.path}."
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}."
        return error_response(exc.status_code, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "the request"
        if first.get("type") == "missing":
            message = f"missing form field '{where}'."
        else:
            message = f"invalid value for '{where}': {first.get('msg', 'malformed')}."
        return error_response(400, message)

    @app.exception_handler(FacetwinError)
    async def _facetwin_error(request: Request, exc: FacetwinError):
        return error_response(422, web_message(str(exc)))

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception):
        return error_response(500, f"internal error ({type(exc).__name__}); the server log has the details.")

    @app.middleware("http")
    async def _auth(request: Request, call_next):
        path = request.url.path
        if api_key and not (path in PUBLIC_PATHS or path.startswith(("/static/", "/docs-assets/"))):
            sent = request.headers.get("x-api-key")
            auth = request.headers.get("authorization", "")
            if not sent and auth.lower().startswith("bearer "):
                sent = auth[7:].strip()
            if not sent or not secrets.compare_digest(sent.encode(), api_key.encode()):
                reason = "a wrong API key was sent" if sent else "this server needs an API key"
                return error_response(
                    401, f"{reason}: send it as X-API-Key or Authorization: Bearer.",
                    headers={"WWW-Authenticate": "Bearer"},
                )
        return await call_next(request)

    # ------------------------------------------------------------------ helpers
    async def decode(upload: UploadFile, field: str) -> tuple[np.ndarray, str]:
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
        return rgb, label

    async def decode_with_digest(upload: UploadFile, field: str) -> tuple[np.ndarray, str, str]:
        rgb, label = await decode(upload, field)
        await upload.seek(0)
        return rgb, label, hashlib.sha256(await upload.read()).hexdigest()

    async def on_model(fn, *args, timing: dict | None = None, **kwargs):
        def locked():
            with lock:
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

    def need_gallery():
        if gallery is None:
            raise ServiceError(503, "this server has no gallery; start it with --gallery FILE to enroll and identify.")
        return gallery

    def size(rgb: np.ndarray) -> dict:
        return {"width": int(rgb.shape[1]), "height": int(rgb.shape[0])}

    # ------------------------------------------------------------------ endpoints
    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    if swagger is not None:
        from fastapi.openapi.docs import get_swagger_ui_html

        app.mount("/docs-assets", StaticFiles(directory=swagger), name="docs-assets")

        @app.get("/docs", include_in_schema=False)
        async def docs():
            return get_swagger_ui_html(
                openapi_url="openapi.json",
                title="facetwin API",
                swagger_js_url="docs-assets/swagger-ui-bundle.js",
                swagger_css_url="docs-assets/swagger-ui.css",
                swagger_favicon_url="docs-assets/favicon-32x32.png",
            )

    @app.get("/healthz", summary="Liveness and what the server runs", responses=error_responses(401))
    async def healthz():
        return {
            "status": "ok",
            "model": name,
            "fingerprint": model.fingerprint,
            "distance": model.distance,
            "threshold": model.threshold if math.isfinite(model.threshold) else None,
            "gallery": gallery is not None,
            "max_upload_bytes": int(max_upload_bytes),
            "api_key_required": api_key is not None,
        }

    @app.post(
        "/v1/verify", summary="Are the two photos the same person?",
        responses=error_responses(400, 401, 413, 415, 422, 503),
    )
    async def verify(
        a: Annotated[UploadFile, File(description="first photo")],
        b: Annotated[UploadFile, File(description="second photo")],
    ):
        """The largest face of each photo is detected, aligned and embedded; ``same`` is ``distance <= threshold``.

        ``faces`` gives, per photo, the box ``[x, y, w, h]`` in the photo's pixels, the detector score and
        the photo's ``width`` and ``height``.
        """
        if not math.isfinite(model.threshold):
            raise ServiceError(503, f"model {name} has no decision threshold; serve a trained run (--model RUN_DIR).")
        (rgb_a, label_a), (rgb_b, label_b) = await decode(a, "a"), await decode(b, "b")
        timing: dict = {}
        result = await on_model(model.verify, rgb_a, rgb_b, names=(label_a, label_b), timing=timing)
        doc = _jsonable(result.to_dict())
        for face, rgb in zip(doc["faces"], (rgb_a, rgb_b), strict=True):
            face.update(size(rgb))
        doc["model"] = name
        doc["seconds"] = round(timing["seconds"], 4)  # detection + embedding (decoding and queueing excluded)
        return doc

    @app.post(
        "/v1/embed", summary="The embedding of the largest face of a photo",
        responses=error_responses(400, 401, 413, 415, 422),
    )
    async def embed(image: Annotated[UploadFile, File(description="a photo")]):
        rgb, label = await decode(image, "image")

        def work():
            crop = model.face_crops(rgb, no_face="error", name=label)[0]
            return crop, model.embed_crops(crop.crop[None])[0]

        crop, vector = await on_model(work)
        face = _jsonable(crop.to_dict())
        face.update(size(rgb))
        return {
            "embedding": [float(v) for v in vector],
            "dim": int(vector.shape[0]),
            "distance": model.distance,
            "face": face,
            "model": name,
            "fingerprint": model.fingerprint,
        }

    @app.post(
        "/v1/identify", summary="Who in the gallery is this?", responses=error_responses(400, 401, 413, 415, 422, 503)
    )
    async def identify(
        image: Annotated[UploadFile, File(description="a photo")],
        top_k: Annotated[int, Form(ge=1, le=100, description="how many candidates")] = 3,
    ):
        g = need_gallery()
        rgb, label = await decode(image, "image")

        def work():
            crop = model.face_crops(rgb, no_face="error", name=label)[0]
            result = g.search(model.embed_crops(crop.crop[None])[0], top_k=top_k)
            result.face = crop.to_dict()
            return result

        doc = _jsonable(await on_model(work))
        doc["file"] = label
        doc.update(size(rgb))
        if doc.get("face"):
            doc["face"].update(size(rgb))
        return doc

    @app.post(
        "/v1/people/{person}/images", summary="Enroll photos of a person",
        responses=error_responses(400, 401, 413, 415, 422, 503),
    )
    async def enroll(
        person: str,
        images: Annotated[list[UploadFile], File(description="one or more photos of the person")],
    ):
        g = need_gallery()
        person = person.strip()
        if not person:
            raise ServiceError(400, "the person's name is empty.")
        decoded = [await decode_with_digest(up, "images") for up in images]

        def work():
            crops = [model.face_crops(rgb, no_face="error", name=label)[0].crop for rgb, label, _ in decoded]
            vectors = model.embed_crops(np.stack(crops))
            return g.enroll_embeddings(person, vectors, sources=[digest for _, _, digest in decoded])

        added = await on_model(work)
        return {"person": person, "enrolled": int(added), "files": [label for _, label, _ in decoded]}

    @app.get("/v1/people", summary="The people in the gallery", responses=error_responses(401, 503))
    async def people():
        g = need_gallery()
        listing = await on_model(g.people)
        return {"people": _jsonable(listing)}

    @app.delete(
        "/v1/people/{person}", summary="Remove a person and their embeddings", responses=error_responses(401, 404, 503)
    )
    async def remove(person: str):
        g = need_gallery()
        known = {p.name for p in await on_model(g.people)}
        if person not in known:
            raise ServiceError(404, f"no person named '{person}' in the gallery.")
        removed = await on_model(g.remove, person)
        return {"person": person, "removed": int(removed)}

    @app.get("/v1/gallery", summary="Gallery statistics", responses=error_responses(401, 503))
    async def gallery_stats():
        g = need_gallery()
        return _jsonable(await on_model(g.stats))

    if index_path is not None:
        from .find_route import add_find_route

        add_find_route(app, index_path, model, decode, on_model, _jsonable)
    return app


__all__ = ["create_app", "UploadLimit", "ServiceError", "DEFAULT_MAX_UPLOAD"]
