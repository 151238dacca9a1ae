"""The Ray engine: a Ray Data pipeline, stage 1 (decode + detect + align) as tasks and stage 2 (embed) on actors
holding one model each; the driver writes the shards. Every node reads the photos through the archive root the
driver found (``--root``): the archive must be mounted there on every node.

``workers`` is the number of CPUs used: on the private Ray started for the run (:mod:`facetwin.collection.ray_local`:
127.0.0.1 only, a token of its own, never another cluster, nothing left behind), ``workers`` CPUs; on a cluster the
user names (``address``) the cluster's CPUs by default. Both stages ask for one CPU per worker, so Ray Data fuses
them into one operator: each actor decodes, detects, aligns and embeds its blocks with its one model (running
single-threaded), the crops never cross the object store, and the actors spread over the nodes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from pathlib import Path

from facetwin.collection.engine_local import PREPARE_PHOTOS
from facetwin.collection.locking import uninterrupted
from facetwin.collection.pipeline import Embedder, embed_batch_size, prepare
from facetwin.collection.ray_local import private_ray
from facetwin.collection.writer import ShardWriter
from facetwin.errors import FacetwinError

RAY_DATA_WORKERS = ("StreamingExecutor-", "iter_threaded")  # the names Ray Data gives a run's busy threads


def _runtime_env() -> dict:
    """Workers import this same facetwin: its source folder goes first on their PYTHONPATH."""
    src = str(Path(__file__).resolve().parents[2])
    env = {"PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p)}
    if os.environ.get("FACETWIN_HOME"):
        env["FACETWIN_HOME"] = os.environ["FACETWIN_HOME"]
    return {"env_vars": env}


@contextlib.contextmanager
def connected(workers: int | None, address: str | None):
    """Ray for one run; yields the module and the seconds it took to start or reach. ``address`` (a cluster the
    user names) is joined and left; without it, a private Ray of ``workers`` CPUs (default: this machine's) is
    started and removed afterwards. A Ray this process already runs (``ray.init`` by the caller) is used as it is."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise FacetwinError("Ray is not installed; in a facetwin checkout: pip install -e '.[ray]'.") from None
    began = time.perf_counter()
    if ray.is_initialized():
        yield ray, 0.0
        return
    options = {"runtime_env": _runtime_env(), "logging_level": logging.WARNING, "log_to_driver": False}
    with contextlib.ExitStack() as stack:
        # Ray prints what its raylets report (e.g. a worker that died) to sys.stdout: stdout stays facetwin's (--json)
        stack.enter_context(contextlib.redirect_stdout(sys.stderr))
        private = address is None
        if private:
            address = stack.enter_context(private_ray(workers or os.cpu_count() or 1))
        try:
            # A Ctrl-C inside ray.init leaves Ray threads that crash the process as it exits: on the private Ray
            # (ready, joined in a second or two) it waits; joining a named cluster may take long, so it does not.
            with uninterrupted() if private else contextlib.nullcontext():
                ray.init(address=address, include_dashboard=False, **options)
        except (ConnectionError, RuntimeError, ValueError, ray.exceptions.AuthenticationError) as exc:
            raise FacetwinError(_unreachable(address, exc)) from None
        finally:
            stack.callback(ray.shutdown)
        yield ray, time.perf_counter() - began


def _unreachable(address: str, exc: BaseException) -> str:
    """Why a named cluster cannot be joined, in one sentence (a refused or missing token says what to set)."""
    told = ("export RAY_AUTH_MODE=token and the cluster's token in RAY_AUTH_TOKEN, or its file in RAY_AUTH_TOKEN_PATH, "
            "as for ray start")
    from ray.exceptions import AuthenticationError

    if isinstance(exc, AuthenticationError):  # raised here, before any connection: this process has no token
        reason = exc.message.splitlines()[0].rstrip(".")
        return f"cannot reach Ray at {address}: this process has no usable token ({reason}; {told})."
    chain, cause = [], exc
    while cause is not None and len(chain) < 10:  # Ray keeps the refusal as text inside its own errors
        chain.append(f"{type(cause).__name__}: {cause}")
        cause = cause.__cause__ or cause.__context__
    if any("AuthenticationError" in text or "InvalidAuthToken" in text for text in chain):
        return f"cannot reach Ray at {address}: it refused this process's token ({told})."
    return f"cannot reach Ray at {address} ({str(exc).splitlines()[0]})."


def _join_pipeline_threads(started: set[threading.Thread], seconds: float = 30.0) -> None:
    """Wait (at most ``seconds``) for the threads Ray Data started to run this iteration, so that Ray is shut down
    only after them, also on Ctrl-C: a thread that calls into Ray after ray.shutdown ends the process with status 1
    and the interrupt is lost. Not waited for: Ray Data's pollers, which live until exit, and its block prefetcher,
    which its closed iterator leaves parked (it calls Ray only when fed, and the threads that fed it have ended)."""
    deadline = time.monotonic() + seconds
    for thread in started:
        if thread.name.startswith(RAY_DATA_WORKERS):
            thread.join(max(0.0, deadline - time.monotonic()))


def run_ray(paths: list[str], model, source: str, writer: ShardWriter, *, root: str, workers: int | None = None,
            address: str | None = None) -> dict:
    """Index ``paths`` (below ``root``, which every node reads them through) on Ray; returns what the run used
    (workers, start-up seconds)."""
    with connected(workers, address) as (ray, startup):
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
            prepare, fn_kwargs={"spec": spec, "root": root}, batch_size=PREPARE_PHOTOS,
            batch_format="numpy", num_cpus=1,
        )
        ds = ds.map_batches(
            Embedder, fn_constructor_kwargs={"source": source, "fingerprint": model.fingerprint, "threads": 1},
            batch_size=embed_batch_size(model), batch_format="numpy", num_cpus=1,
            compute=ray.data.ActorPoolStrategy(size=actors),
        )  # Ray Data retries tasks and restarts actors (and their tasks) lost with a worker, by default
        before = set(threading.enumerate())
        try:
            with contextlib.closing(iter(ds.iter_batches(batch_size=None, batch_format="numpy"))) as batches:
                for batch in batches:
                    writer.add(batch)
        finally:
            _join_pipeline_threads(set(threading.enumerate()) - before)
        return {"workers": actors, "ray_startup_seconds": round(startup, 3), "ray_address": address or "private"}


__all__ = ["run_ray", "connected"]
