"""``POST /v1/find``: the photos of a collection index in which the person of an uploaded photo appears."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, FastAPI, File, Form, UploadFile

from facetwin.collection.find import Finder
from facetwin.collection.originals import shown_path
from facetwin.core.jsonsafe import json_safe
from facetwin.service.http_errors import error_responses
from facetwin.service.limits import read_uploads
from facetwin.service.routes import Service


def add_find(app: FastAPI, index_dir: str | Path) -> None:
    """Serve ``/v1/find`` over ``index_dir`` (loaded now, so the first call is fast)."""
    backend = app.state.backend
    backend.finder = Finder(index_dir, backend.model)
    backend.finder.load()
    router = APIRouter()

    @router.post(
        "/v1/find", summary="In which photos of the index does this person appear?",
        responses=error_responses(400, 401, 413, 415, 422),
    )
    async def find(
        svc: Service,
        image: Annotated[UploadFile, File(description="a photo of the person (its main face)")],
        top_k: Annotated[int, Form(ge=1, le=1000, description="at most this many photos")] = 20,
    ):
        """Photos best first, each with its best face's box ``[x, y, w, h]``, distance and ``face_id`` (for
        ``/v1/faces/{face_id}/thumbnail``), down to the threshold. ``path`` starts at the folder that was indexed
        (``Photos/2019/a.jpg``): the server's own folders are never shown."""
        (upload,) = await read_uploads([image], "image", svc.limits)
        async with svc.budget.reserve(upload.pixels):
            rgb = await svc.decode(upload)
            doc = json_safe(await svc.run(svc.finder.find, rgb, top_k, name=upload.label))
            del rgb
        roots = svc.finder.roots
        for hit in doc["hits"]:  # no server folders in answers: each photo from the folder that was indexed
            hit["path"] = shown_path(hit["path"], roots)
        doc["file"] = upload.label
        doc["index"] = Path(index_dir).name
        return doc

    app.include_router(router)
