"""``POST /v1/find``: the photos of a collection index in which the person of an uploaded photo appears."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, File, Form, UploadFile

from .http_errors import error_responses


def add_find_route(app: FastAPI, index_dir: str | Path, model, decode, on_model, jsonable) -> None:
    """Register ``/v1/find`` on ``app``, searching ``index_dir`` (loaded now, so the first call is fast)."""
    from ..collection.find import Finder

    finder = Finder(index_dir, model)
    finder.load()
    app.state.finder = finder

    @app.post(
        "/v1/find", summary="In which photos of the index does this person appear?",
        responses=error_responses(400, 401, 413, 415, 422),
    )
    async def find(
        image: Annotated[UploadFile, File(description="a photo of the person (its largest face)")],
        top_k: Annotated[int, Form(ge=1, le=1000, description="at most this many photos")] = 20,
    ):
        """Photos best first, each with its best face's box ``[x, y, w, h]`` and distance, down to the threshold."""
        rgb, label = await decode(image, "image")
        doc = jsonable(await on_model(finder.find, rgb, top_k, name=label))
        doc["file"] = label
        doc["index"] = str(index_dir)
        return doc
