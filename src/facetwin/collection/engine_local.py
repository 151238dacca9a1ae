"""The in-process engine: the two stages one after the other in this process, no start-up cost."""

from __future__ import annotations

from facetwin.collection.pipeline import Embedder, embed_batch_size, prepare
from facetwin.collection.writer import ShardWriter

PREPARE_PHOTOS = 8  # photos per stage-1 batch (the Ray engine uses the same)


def run_local(paths: list[str], model, writer: ShardWriter, root: str) -> None:
    """Index ``paths`` (below ``root``) with ``model`` (a loaded :class:`facetwin.model.Model`), feeding
    ``writer``."""
    embedder = Embedder(model, model.fingerprint)
    spec = model.backbone.input
    per_batch = embed_batch_size(model)
    pending: list[dict] = []
    faces = photos = 0

    def embed_pending() -> None:
        nonlocal faces, photos
        if not pending:
            return
        merged = {key: _concat([b[key] for b in pending]) for key in pending[0]}
        pending.clear()
        faces = photos = 0
        writer.add(embedder(merged))

    step = min(PREPARE_PHOTOS, writer.shard_photos)
    for start in range(0, len(paths), step):
        chunk = paths[start : start + step]
        batch = prepare({"path": chunk}, spec=spec, root=root)
        pending.append(batch)
        faces += len(batch["path"])
        photos += len(chunk)
        if faces >= per_batch or photos >= writer.shard_photos:  # a shard is written as soon as it is full
            embed_pending()
    embed_pending()


def _concat(parts):
    import numpy as np

    return np.concatenate(parts, axis=0)


__all__ = ["run_local", "PREPARE_PHOTOS"]
