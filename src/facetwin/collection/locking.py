"""Steps that must not be split: the index's writer lock (one writer at a time) and Ctrl-C held off during a commit."""

from __future__ import annotations

import contextlib
import fcntl
import signal
import threading
from pathlib import Path

from facetwin.core import paths
from facetwin.errors import FacetwinError


def writer_lock(root: Path):
    """The index's writer lock (``.lock``, owner-only), held until the returned file is closed."""
    handle = open(paths.private_file(root / ".lock"), "w")  # noqa: SIM115 - held for the store's life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise FacetwinError(f"{root}: another facetwin run is writing this index.") from None
    return handle


@contextlib.contextmanager
def locked(root: Path):
    """The index's writer lock, held for the block."""
    handle = writer_lock(root)
    try:
        yield
    finally:
        handle.close()


@contextlib.contextmanager
def uninterrupted():
    """Ctrl-C (SIGINT) waits until the block is done, then interrupts as it would have: for steps that must not be
    split, such as a commit. Only the main thread receives KeyboardInterrupt, so elsewhere nothing is needed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    except ValueError:  # signals are not ours to handle here (an embedding interpreter)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
        if caught:
            if callable(previous):
                previous(signal.SIGINT, None)
            elif previous != signal.SIG_IGN:
                raise KeyboardInterrupt


__all__ = ["writer_lock", "locked", "uninterrupted"]
