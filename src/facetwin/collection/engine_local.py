"""The in-process engine: the two stages one after the other in this process, no start-up cost."""

from __future__ import annotations

from facetwin.collection.pipeline import Embedder, embed_batch_size, prepare
from facetwin.collection.writer import ShardWriter

PREPARE_PHOTOS = 8  # photos per stage-1 batch (the Ray engine uses the same)


def run_local(paths: list[str], model, writer: ShardWriter) -> None:
    """Index ``paths`` with ``model`` (a loaded :class:`facetwin.model.Model`), feeding ``writer``."""
    embedder = Embedder(model, model.fingerprint)
    spec = model.backbone.input
    per_batch = embed_batch_size(model)
    pending: list[dict] = []
    faces = 0

    def embed_pending() -> None:
        nonlocal faces
        if not pending:
            return
        merged = {key: _concat([b[key] for b in pending]) for key in pending[0]}
        pending.clear()
        faces = 0
        writer.add(embedder(merged))

    for start in range(0, len(paths), PREPARE_PHOTOS):
        batch = prepare({"path": paths[start : start + PREPARE_PHOTOS]}, size=spec.size, alignment=spec.alignment)
        pending.append(batch)
        faces += len(batch["path"])
        if faces >= per_batch:
            embed_pending()
    embed_pending()


def _concat(parts):
    import numpy as np

    return np.concatenate(parts, axis=0)


__all__ = ["run_local", "PREPARE_PHOTOS"]
