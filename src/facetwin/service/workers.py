"""How the service runs model calls: one at a time, on replicas, or with micro-batched embeddings.

- ``lock``: one model call at a time under a lock (each call may use every core through onnxruntime's
  intra-op threads).
- ``replicas``: ``n`` copies of the model (default: one per core), each with its own single-threaded
  onnxruntime session (:meth:`Backbone.replica`); a call takes a free copy, so ``n`` requests run at once.
- ``batch``: detection runs in ``n`` slots at once, and the face crops that concurrent requests want embedded
  within ``window`` seconds go through the trunk as one batch (:class:`Batcher`).

All three give the same answers: a replica computes exactly what the model does, and a batched trunk call
gives each crop the embedding it gets alone (to float rounding). All live in one process, so the gallery
(SQLite, with its own locking) is shared as it is in ``lock`` mode.
"""

from __future__ import annotations

import copy
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np

from facetwin.errors import FacetwinError
from facetwin.model import Model

MODES = ("lock", "replicas", "batch")
# Chosen by benchmarks/service_load.py --modes lock,replicas,batch (see the README's service table).
DEFAULT_MODE = "batch"
WINDOW = 0.004  # seconds the batcher waits for more crops after the first one
MAX_BATCH = 32


def cores() -> int:
    """The cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def replica(model: Model) -> Model:
    """A copy of ``model`` for one more concurrent caller: its backbone's :meth:`replica`, the same head."""
    twin = copy.copy(model)
    twin.backbone = model.backbone.replica()
    return twin


class Workers:
    """``lock`` mode: :meth:`call` runs ``fn(model, ...)`` one call at a time."""

    mode = "lock"

    def __init__(self, model: Model) -> None:
        self.model = model
        self.size = 1
        self._lock = threading.Lock()

    def call(self, fn: Callable, *args, **kwargs):
        """``fn(model, *args, **kwargs)`` on a model this caller has to itself (blocks the calling thread)."""
        with self._lock:
            return fn(self.model, *args, **kwargs)

    def close(self) -> None:
        """Stop background threads (none here)."""

    def describe(self) -> dict:
        return {"mode": self.mode, "size": self.size}


class Replicas(Workers):
    """``replicas`` mode: ``n`` model copies; each call borrows a free one."""

    mode = "replicas"

    def __init__(self, model: Model, n: int) -> None:
        super().__init__(model)
        self.size = n
        self._free: queue.SimpleQueue[Model] = queue.SimpleQueue()
        for _ in range(n):
            self._free.put(replica(model))

    def call(self, fn: Callable, *args, **kwargs):
        twin = self._free.get()
        try:
            return fn(twin, *args, **kwargs)
        finally:
            self._free.put(twin)


class Batcher:
    """Collects crops from concurrent callers for ``window`` seconds (or ``max_batch`` crops) into one
    ``embed_crops`` call on ``model``, in a thread of its own."""

    def __init__(self, model: Model, window: float = WINDOW, max_batch: int = MAX_BATCH) -> None:
        self.model = model
        self.window = float(window)
        self.max_batch = int(max_batch)
        self.batches = 0  # trunk calls made (for tests and benchmarks)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="facetwin-batcher", daemon=True)
        self._thread.start()

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """Embeddings of ``crops`` ``(N, S, S, 3)``, computed in a batch with whatever else is waiting."""
        crops = np.asarray(crops)
        if crops.ndim == 3:
            crops = crops[None]
        future: Future = Future()
        self._queue.put((crops, future))
        return future.result()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _collect(self, first) -> list:
        items, count = [first], len(first[0])
        deadline = time.monotonic() + self.window
        while count < self.max_batch:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)
                break
            items.append(item)
            count += len(item[0])
        return items

    def _loop(self) -> None:
        while (first := self._queue.get()) is not None:
            items = self._collect(first)
            try:
                out = self.model.embed_crops(np.concatenate([crops for crops, _ in items]))
                self.batches += 1
            except BaseException as exc:  # every waiting caller gets the error
                for _, future in items:
                    future.set_exception(exc)
                continue
            start = 0
            for crops, future in items:
                future.set_result(out[start : start + len(crops)])
                start += len(crops)


class Batching(Workers):
    """``batch`` mode: ``n`` calls at once on a model whose ``embed_crops`` goes through one :class:`Batcher`."""

    mode = "batch"

    def __init__(self, model: Model, n: int, window: float = WINDOW) -> None:
        super().__init__(model)
        self.size = n
        self.batcher = Batcher(model, window)
        self._batched = copy.copy(model)
        self._batched.embed_crops = self.batcher.embed  # verify/embed inside the model now batch across callers
        self._slots = threading.BoundedSemaphore(n)

    def call(self, fn: Callable, *args, **kwargs):
        with self._slots:
            return fn(self._batched, *args, **kwargs)

    def close(self) -> None:
        self.batcher.close()

    def describe(self) -> dict:
        return {"mode": self.mode, "size": self.size, "window_ms": round(1000 * self.batcher.window, 1)}


def make_workers(model: Model, mode: str = DEFAULT_MODE, size: int | None = None) -> Workers:
    """The workers of ``mode`` (``lock``, ``replicas`` or ``batch``) over ``model``; ``size`` defaults to the
    number of cores."""
    if mode not in MODES:
        raise FacetwinError(f"unknown workers mode '{mode}'; choose one of: {', '.join(MODES)}.")
    n = int(size or cores())
    if n < 1:
        raise FacetwinError(f"the number of workers must be at least 1, got {n}.")
    if mode == "replicas":
        return Replicas(model, n)
    if mode == "batch":
        return Batching(model, n)
    return Workers(model)


__all__ = ["MODES", "DEFAULT_MODE", "Workers", "Replicas", "Batching", "Batcher", "make_workers", "replica", "cores"]
