"""The facetwin HTTP API and web page (FastAPI; run it with ``facetwin serve``).

Every error is JSON ``{"error": "one sentence"}`` with a status that says what went wrong:

- 400 a form field is missing or malformed (or a person's or cluster's name is not acceptable);
- 401 an API key is configured (``FACETWIN_API_KEY``) and the call did not send it
  (``X-API-Key: KEY`` or ``Authorization: Bearer KEY``); only ``/healthz``, the page and its assets are public;
- 403 without an API key: a ``Host`` that is not this machine, or a change from another origin (``security.py``);
- 404 unknown person, cluster or face, or a face whose photo is no longer the one indexed; 408 the body stalled;
  409 a clustering run is already going;
- 413 the body is over ``max_upload_bytes`` (answered at once when Content-Length says so) or, on the cluster
  routes, over 64 kB or 1,000 ids; or a photo / the request / a thumbnail's photo has more pixels than allowed
  (``limits.py``), or an enrolment has too many photos;
- 415 an upload is not an image of an accepted format; 422 an image has no face (or an index call failed);
- 503 no gallery or index configured, the gallery or the clusters stayed busy (with ``Retry-After``), or no
  decision threshold (verify).

Answers never name the server's folders or command-line flags: library sentences pass through
``http_errors.web_message``, which shows the gallery and the index by name only.

``create_app`` wires the model and gallery it is given into the endpoints of ``routes.py``, and adds
the error handlers, the security gate, read timeouts, the page and the offline ``/docs``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from facetwin.backbones.registry import DEFAULT_BACKBONE
from facetwin.errors import FacetwinError
from facetwin.gallery import Gallery
from facetwin.loading import load
from facetwin.model import Model
from facetwin.service.collection import CollectionView
from facetwin.service.collection import router as collection_router
from facetwin.service.http_errors import DEFAULT_MAX_UPLOAD, ServiceError, UploadLimit, error_response
from facetwin.service.limits import Limits
from facetwin.service.routes import Backend, router
from facetwin.service.security import Gate, ReadTimeout
from facetwin.service.workers import DEFAULT_MODE, make_workers

STATIC = Path(__file__).resolve().parent / "static"
GALLERY_TIMEOUT = 5.0  # seconds the service waits for a gallery another process holds locked (then 503)


def _swagger_assets() -> Path | None:
    """Swagger UI's files from the ``swagger-ui-py`` package, so ``/docs`` works offline (no CDN)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        return None
    static = Path(next(iter(spec.submodule_search_locations))) / "static"
    return static if (static / "swagger-ui-bundle.js").is_file() else None


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI):
    """At shutdown, stop the model workers (their threads would keep the model alive in the process)."""
    yield
    app.state.backend.workers.close()


def create_app(
    model: Model | str | Path = DEFAULT_BACKBONE,
    gallery: Gallery | str | Path | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD,
    api_key: str | None = os.environ.get("FACETWIN_API_KEY"),
    *,
    limits: Limits | None = None,
    allowed_hosts: tuple[str, ...] = (),
    read_timeout: float = 15.0,
    body_deadline: float = 120.0,
    index_path: str | Path | None = None,
    workers_mode: str = DEFAULT_MODE,
    workers: int | None = None,
) -> FastAPI:
    """The service over ``model`` (a Model, backbone name or run directory) and ``gallery`` (a Gallery or its
    file; enables the people endpoints). ``api_key`` (default ``$FACETWIN_API_KEY``) makes every call but
    ``/healthz`` and the page need that key; without one, only ``Host`` names of this machine (and
    ``allowed_hosts``) are served. ``limits`` caps pixels and photos (``limits.Limits``); a request body
    that stalls ``read_timeout`` seconds, or takes longer than ``body_deadline``, gets 408. ``index_path``
    (a ``facetwin index`` folder) enables ``/v1/find`` and the Collection view at ``/collection``.
    ``workers_mode`` is how model calls run: ``lock`` (one at a time), ``replicas`` or ``batch`` (``workers`` at
    once, default one per core; see ``workers.py``)."""
    model = load(model) if isinstance(model, str | Path) else model
    if gallery is not None and not isinstance(gallery, Gallery):
        gallery = Gallery(gallery, model, timeout=GALLERY_TIMEOUT)
    api_key = api_key or None
    swagger = _swagger_assets()
    app = FastAPI(
        lifespan=_lifespan,
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
    pool = make_workers(model, workers_mode, workers)
    app.state.backend = Backend(model, gallery, max_upload_bytes, api_key, limits, pool)
    app.add_middleware(UploadLimit, limit=int(max_upload_bytes))  # added first = innermost
    app.add_middleware(ReadTimeout, read_timeout=read_timeout, body_deadline=body_deadline)
    app.add_middleware(Gate, api_key=api_key, allowed_hosts=tuple(allowed_hosts))  # outermost
    app.state.collection = CollectionView(index_path) if index_path is not None else None
    if index_path is not None:
        app.state.backend.private.append(Path(index_path))
    _add_error_handlers(app)
    _add_pages(app, swagger)
    app.include_router(router)
    if index_path is not None:
        from facetwin.service.find_route import add_find

        add_find(app, index_path)
    app.include_router(collection_router)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Every error becomes ``{"error": "one sentence"}`` with its status."""

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError):
        return error_response(exc.status, exc.message, headers=exc.headers)

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
        return error_response(422, app.state.backend.web(str(exc)))

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception):
        return error_response(500, f"internal error ({type(exc).__name__}); the server log has the details.")



def _add_pages(app: FastAPI, swagger: Path | None) -> None:
    """The web page at ``/`` with its static files, and Swagger UI at ``/docs`` from local files."""

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/collection", include_in_schema=False)
    async def collection_page():
        return FileResponse(STATIC / "collection.html", headers={"Cache-Control": "no-cache"})

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



__all__ = ["create_app", "UploadLimit", "ServiceError", "DEFAULT_MAX_UPLOAD"]
