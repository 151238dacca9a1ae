"""The facetwin HTTP API and web page (FastAPI; run it with ``facetwin serve``).

Every error is JSON ``{"error": "one sentence"}`` with a status that says what went wrong:

- 400 a form field is missing or malformed;
- 401 an API key is configured (``FACETWIN_API_KEY``) and the call did not send it
  (``X-API-Key: KEY`` or ``Authorization: Bearer KEY``); the page, its assets and ``/docs`` stay public;
- 404 unknown person; 503 no gallery configured (people endpoints) or no decision threshold (verify);
- 413 the request body is over ``max_upload_bytes`` (checked on Content-Length and counted while reading);
- 415 an upload is not an image facetwin can decode; 422 an image has no face.

``create_app`` wires the model and gallery it is given into the endpoints of ``routes.py``, and adds
the error handlers, the API-key check, the page and the offline ``/docs``.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
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
from facetwin.service.http_errors import DEFAULT_MAX_UPLOAD, ServiceError, UploadLimit, error_response, web_message
from facetwin.service.routes import Backend, router

STATIC = Path(__file__).resolve().parent / "static"
PUBLIC_PATHS = ("/", "/collection", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json", "/favicon.ico")


def _swagger_assets() -> Path | None:
    """Swagger UI's files from the ``swagger-ui-py`` package, so ``/docs`` works offline (no CDN)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        return None
    static = Path(next(iter(spec.submodule_search_locations))) / "static"
    return static if (static / "swagger-ui-bundle.js").is_file() else None


def create_app(
    model: Model | str | Path = DEFAULT_BACKBONE,
    gallery: Gallery | str | Path | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD,
    api_key: str | None = os.environ.get("FACETWIN_API_KEY"),
    index_path: str | Path | None = None,
) -> FastAPI:
    """The service over ``model`` (a Model, backbone name or run directory) and ``gallery`` (a Gallery or its
    file; enables the people endpoints). ``api_key`` (default ``$FACETWIN_API_KEY``) makes every API call need
    that key. ``index_path`` (a ``facetwin index`` folder) enables the Collection view at ``/collection``."""
    model = load(model) if isinstance(model, str | Path) else model
    if gallery is not None and not isinstance(gallery, Gallery):
        gallery = Gallery(gallery, model)
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
    app.state.backend = Backend(model, gallery, max_upload_bytes, api_key)
    app.state.collection = CollectionView(index_path) if index_path is not None else None
    app.add_middleware(UploadLimit, limit=int(max_upload_bytes))
    _add_error_handlers(app)
    _add_api_key_check(app, api_key)
    _add_pages(app, swagger)
    app.include_router(router)
    app.include_router(collection_router)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Every error becomes ``{"error": "one sentence"}`` with its status."""

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



def _add_api_key_check(app: FastAPI, api_key: str | None) -> None:
    """With a key, every API call must send it (the page, its assets and /docs stay public)."""

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
