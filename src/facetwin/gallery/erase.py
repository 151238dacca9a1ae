"""Erasure that can be verified: after a removal, no byte of the removed rows stays in ``.db`` or ``-wal``.

A removal commits with ``secure_delete`` (freed pages are zeroed) and marks the gallery ``erase_pending``;
then ``VACUUM`` rewrites the file and a ``wal_checkpoint(TRUNCATE)`` moves every page back into the
database and empties the ``-wal`` file. SQLite cannot do that while another connection still reads an older
snapshot, so the checkpoint result is checked and retried until ``timeout``; if a reader is still there,
the caller gets one sentence saying so, the mark stays, and the next open of the gallery finishes the job.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from facetwin.errors import FacetwinError
from facetwin.gallery.db import GalleryBusy, sqlite_errors

PENDING = "erase_pending"


def wal_path(path: Path) -> Path:
    return Path(f"{path}-wal")


def checkpoint(db: sqlite3.Connection, path: Path, timeout: float) -> bool:
    """Move the whole WAL into the database and truncate it; retried until ``timeout``; True when done."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        (saved,) = db.execute("PRAGMA busy_timeout").fetchone()
        db.execute(f"PRAGMA busy_timeout={max(1, int((deadline - time.monotonic()) * 1000))}")
        try:  # TRUNCATE waits in SQLite's busy handler for readers: bounded by what is left of ``timeout``
            busy, log, moved = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            busy, log, moved = 1, -1, -1
        finally:
            db.execute(f"PRAGMA busy_timeout={saved}")
        wal = wal_path(path)
        if busy == 0 and log == moved and (not wal.exists() or wal.stat().st_size == 0):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


def finish(db: sqlite3.Connection, path: Path, timeout: float) -> None:
    """VACUUM and checkpoint after a removal; clears the pending mark, or raises GalleryBusy naming the file."""
    with sqlite_errors(path):
        db.execute("VACUUM")
        if not checkpoint(db, path, timeout):
            raise GalleryBusy(
                f"{wal_path(path)}: the removed person is gone from the gallery, but their bytes stay in this "
                f"write-ahead log while another process keeps reading the gallery; the erasure completes "
                "after that reader finishes, when the gallery is next opened or someone else is removed."
            )
        db.execute("UPDATE meta SET value = '0' WHERE key = ?", (PENDING,))
        checkpoint(db, path, timeout)  # the flag's own page; holds nothing of the removed rows


def pending(db: sqlite3.Connection) -> bool:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (PENDING,)).fetchone()
    return bool(row and row[0] not in ("0", ""))


def mark(db: sqlite3.Connection) -> None:
    """Inside the removal's transaction: the erasure is not complete until ``finish`` says so."""
    db.execute("INSERT INTO meta(key, value) VALUES (?, '1') ON CONFLICT(key) DO UPDATE SET value = '1'", (PENDING,))


def resume(db: sqlite3.Connection, path: Path, timeout: float = 0.5) -> None:
    """On open: finish an erasure an earlier removal could not complete (quietly; it is retried later)."""
    try:
        if pending(db):
            finish(db, path, timeout)
    except (FacetwinError, sqlite3.Error):
        pass


def remove_temporaries(folder: Path, prefix: str) -> None:
    """Delete left-over temporary files whose name starts with ``prefix`` (index copies being written)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if name.startswith(prefix) and ("tmp" in name[len(prefix):]):
            (folder / name).unlink(missing_ok=True)
