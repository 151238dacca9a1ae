"""``facetwin.index(...)``: scan, skip what the index already holds, run an engine, commit shards."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from facetwin.backbones.registry import DEFAULT_BACKBONE
from facetwin.collection import archive
from facetwin.collection import index_check as check
from facetwin.collection.originals import roots_of
from facetwin.collection.scan import survey
from facetwin.collection.shards import IndexStore
from facetwin.collection.writer import DEFAULT_SHARD_PHOTOS, ShardWriter
from facetwin.core.paths import sha256_file
from facetwin.errors import FacetwinError

RAY_THRESHOLD = 2000  # photos to do; above it (and with Ray installed) "auto" runs on Ray
ENGINES = ("auto", "local", "ray")


@dataclass
class IndexSummary:
    """What one run did, and the index's totals after it."""

    index: str
    engine: str
    scanned: int
    todo: int
    added_photos: int
    added_faces: int
    seconds: float
    photos_per_second: float
    counts: dict
    errors: list[dict] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)  # files that are not photos, by name ending ({".mov": 3})
    unreadable: int = 0  # photos of this run that could not be read


def _ray_available() -> bool:
    """Ray is installed (not imported: importing it costs seconds, and the run may not need it)."""
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def choose_engine(engine: str, todo: int, workers: int | None, address: str | None) -> str:
    """``auto``: Ray when asked for workers or an address, or past ``RAY_THRESHOLD`` photos if installed."""
    if engine not in ENGINES:
        raise FacetwinError(f"unknown engine '{engine}'; choose one of: {', '.join(ENGINES)}.")
    if engine != "auto":
        return engine
    if workers is not None or address is not None:
        return "ray"
    return "ray" if todo > RAY_THRESHOLD and _ray_available() else "local"


def index(
    photos,
    out: str | Path,
    *,
    model=None,
    workers: int | None = None,
    ray_address: str | None = None,
    engine: str = "auto",
    shard_photos: int = DEFAULT_SHARD_PHOTOS,
    progress: bool = True,
    root: str | Path | None = None,
) -> IndexSummary:
    """Index every face of every photo under ``photos`` (folders, lists of paths, files) into ``out``.

    Only photos the index does not hold yet (by path and SHA-256) are processed; a re-run adds what is missing.
    Paths are kept below the archive root (:mod:`facetwin.collection.archive`): ``root`` names it for a new index
    (default: the deepest folder holding every photo), or says where an existing index's root is now.
    """
    from facetwin.loading import load
    from facetwin.model import Model

    if workers is not None and workers < 1:
        raise FacetwinError(f"--workers must be at least 1, got {workers}.")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FacetwinError(f"{out}: exists and is not a folder.")
    if isinstance(model, Model):
        source, loaded = model.source, model
    else:
        manifest_source = _recorded_source(out)
        source = str(model) if model is not None else (manifest_source or DEFAULT_BACKBONE)
        loaded = load(source)
    photos = [photos] if isinstance(photos, str | Path) else list(photos)
    store = IndexStore(out, loaded, write=True, archive_root=root)
    try:
        surveyed = survey(photos, skip=out)
        found = surveyed.photos
        if store.archive_root is None:
            store.archive_root = archive.first_root(photos, [c.path for c in found])
        below = archive.below([c.path for c in found], store.archive_root)
        outside = [c.path for c, rel in zip(found, below, strict=True) if rel is None]
        if outside:  # photos from elsewhere: the root moves up to hold them too
            store.rebase(archive.widened(store.archive_root, outside))
            below = archive.below([c.path for c in found], store.archive_root)
        base = store.archive_root
        earlier = store.lookup(below)
        todo = [rel for rel, c in zip(below, found, strict=True) if _needs_work(earlier.get(rel), c)]
        chosen = choose_engine(engine, len(todo), workers, ray_address)
        before_faces = store.faces_total()
        writer = ShardWriter(store, shard_photos=shard_photos, total=len(todo), progress=progress, earlier=earlier)
        details: dict = {}
        began = time.time()
        try:
            if todo and chosen == "ray":
                from facetwin.collection.engine_ray import run_ray

                details = run_ray(todo, loaded, source, writer, root=base, workers=workers, address=ray_address)
            elif todo:
                from facetwin.collection.engine_local import run_local

                run_local(todo, loaded, writer, base)
                details = {"workers": 1}
            writer.flush()
        except KeyboardInterrupt:
            writer.flush()  # Ctrl-C: keep every photo already complete, then stop
            raise
        finally:
            writer.close()
        seconds = writer.seconds
        details["repeated_rows_dropped"] = writer.duplicates
        if writer.first is not None and writer.done > 1 and seconds > writer.first:
            details["first_photo_seconds"] = round(writer.first, 3)  # start-up: Ray, actors, models, first batch
            details["steady_photos_per_second"] = round((writer.done - 1) / (seconds - writer.first), 3)
        if writer.open:
            missing = ", ".join(sorted(store.absolute(p) for p, _ in writer.open)[:3])
            raise FacetwinError(f"{out}: the run ended with photos still incomplete ({missing}); run it again.")
        run = {
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(began)), "engine": chosen, "todo": len(todo),
            "photos": writer.done, "faces": store.faces_total() - before_faces, "seconds": round(seconds, 3),
            "photos_per_second": round(writer.done / seconds, 3) if seconds > 0 else None,
            "skipped": sum(surveyed.skipped.values()), **details,
        }
        folders, places = roots_of(photos, [c.path for c in found])
        for key, new in (("roots", folders), ("photo_roots", places)):  # photos are shown only from photo_roots
            kept = {archive.relative(folder, base) or "." for folder in new}
            store.manifest[key] = sorted(set(store.manifest.get(key, [])) | kept)
        manifest = store.write_manifest(run)
        return IndexSummary(
            index=str(out), engine=chosen, scanned=len(found), todo=len(todo), added_photos=writer.done,
            added_faces=run["faces"], seconds=seconds, photos_per_second=run["photos_per_second"] or 0.0,
            counts=manifest["counts"], errors=store.errors(), details=details, skipped=dict(surveyed.skipped),
            unreadable=writer.unreadable,
        )
    finally:
        store.close()


def _recorded_source(out: Path) -> str | None:
    """The model source the index's manifest names (None for a new index; a damaged one is refused when opened)."""
    try:
        return check.manifest(out / "manifest.json", (out / "manifest.json").read_text(encoding="utf-8"))["model"][
            "source"]
    except (OSError, UnicodeDecodeError, FacetwinError):
        return None


def _needs_work(info: dict | None, candidate) -> bool:
    """New path (``info``: its version in the index, if any), or a file whose size or time changed since it was
    indexed and whose digest differs now."""
    if info is None:
        return True
    if candidate.size == info["size"] and candidate.mtime_ns == info["mtime_ns"]:
        return False
    if candidate.size != info["size"] or candidate.size < 0:
        return True
    try:  # only the time changed (a copy, a touch): the same bytes need no second look
        return sha256_file(candidate.path) != info["sha256"]
    except OSError:
        return True


def default_workers() -> int:
    return os.cpu_count() or 1


__all__ = ["index", "IndexSummary", "choose_engine", "RAY_THRESHOLD", "ENGINES"]
