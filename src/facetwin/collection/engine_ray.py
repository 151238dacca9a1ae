"""The Ray engine: a Ray Data pipeline, stage 1 (decode + detect + align) as tasks and stage 2 (embed) on actors
holding one model each; the driver writes the shards. Photos must be readable at the same path on every node.

``workers`` is the number of CPUs used: on a local Ray started here, ``ray.init(num_cpus=workers)``; on a
cluster (``address``) the cluster's CPUs by default. Both stages ask for one CPU per worker, so Ray Data fuses
them into one operator: each actor decodes, detects, aligns and embeds its blocks with its one model (running
single-threaded), the crops never cross the object store, and the actors spread over the nodes.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from facetwin.collection.engine_local import PREPARE_PHOTOS
from facetwin.collection.pipeline import Embedder, embed_batch_size, prepare
from facetwin.collection.writer import ShardWriter
from facetwin.errors import FacetwinError


def _runtime_env() -> dict:
    """Workers import this same facetwin: its source folder goes first on their PYTHONPATH."""
    src = str(Path(__file__).resolve().parents[2])
    env = {"PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p)}
    if os.environ.get("FACETWIN_HOME"):
        env["FACETWIN_HOME"] = os.environ["FACETWIN_HOME"]
    return {"env_vars": env}


def start(workers: int | None, address: str | None) -> tuple[object, bool, float]:
    """Connect to (or start) Ray; returns the module, whether we started it, and the seconds it took."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise FacetwinError("Ray is not installed; in a facetwin checkout: pip install -e '.[ray]'.") from None
    began = time.perf_counter()
    if ray.is_initialized():
        return ray, False, 0.0
    options = {"runtime_env": _runtime_env(), "logging_level": logging.WARNING, "log_to_driver": False}
    if address is None and workers is not None:
        options["num_cpus"] = int(workers)
    try:
        ray.init(address=address, include_dashboard=False, **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise FacetwinError(f"cannot start or reach Ray at {address or 'this machine'} ({exc}).") from None
    return ray, True, time.perf_counter() - began


def run_ray(paths: list[str], model, source: str, writer: ShardWriter, *, workers: int | None = None,
            address: str | None = None) -> dict:
    """Index ``paths`` on Ray; returns what the run used (workers, start-up seconds)."""
    ray, started, startup = start(workers, address)
    try:
        import ray.data

        logging.getLogger("ray.data").setLevel(logging.ERROR)  # our own progress bar says how far it is
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        ctx.enable_operator_progress_bars = False
        cpus = int(ray.cluster_resources().get("CPU", 1))
        actors = max(1, min(int(workers or cpus), cpus))
        spec = model.backbone.input
        # small blocks (16 photos): an even load, little redone after a lost worker; at least 2 per actor
        blocks = max(1, min(len(paths), max(2 * actors, len(paths) // (2 * PREPARE_PHOTOS)), 4096))
        ds = ray.data.from_items([{"path": p} for p in paths], override_num_blocks=blocks)
        ds = ds.map_batches(
            prepare, fn_kwargs={"spec": spec}, batch_size=PREPARE_PHOTOS,
            batch_format="numpy", num_cpus=1,
        )
        ds = ds.map_batches(
            Embedder, fn_constructor_kwargs={"source": source, "fingerprint": model.fingerprint, "threads": 1},
            batch_size=embed_batch_size(model), batch_format="numpy", num_cpus=1,
            compute=ray.data.ActorPoolStrategy(size=actors),
        )  # Ray Data retries tasks and restarts actors (and their tasks) lost with a worker, by default
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            writer.add(batch)
        return {"workers": actors, "ray_startup_seconds": round(startup, 3), "ray_address": address or "local"}
    finally:
        if started:
            ray.shutdown()


__all__ = ["run_ray", "start"]
