"""The gallery's SQLite file: opened only when it is (or will become) a facetwin gallery, errors as one sentence.

``connect`` checks the file before anything is written to it: an empty file becomes a gallery (tables,
``application_id``, WAL); a file with other tables, or one that is not SQLite at all, is refused untouched. A gallery
is a store of faces: a new file is created 0600 before SQLite opens it (SQLite gives its ``-wal`` and ``-shm`` files
the database's mode), and an existing gallery is made owner-only when opened (``core/paths.py``).
``sqlite_errors`` turns every ``sqlite3.Error`` into a :class:`FacetwinError` naming the file; a database
that stayed locked beyond the busy timeout becomes :class:`GalleryBusy` (the service answers 503).
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from facetwin.core import paths
from facetwin.errors import FacetwinError

APPLICATION_ID = 0x46545747  # "FTWG": marks the file as a facetwin gallery
TABLES = {"meta", "people", "embeddings"}
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS people (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS embeddings (
    id INTEGER PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    vector BLOB NOT NULL,
    source_sha256 TEXT,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS embeddings_person ON embeddings(person_id);
"""


class GalleryBusy(FacetwinError):
    """The gallery stayed locked by another writer (or reader, for erasure) longer than the timeout."""


def describe(path: Path, exc: sqlite3.Error) -> FacetwinError:
    """One sentence for a SQLite error on the gallery ``path``."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return GalleryBusy(f"{path}: the gallery is busy (locked by another process); try again in a moment.")
    if "malformed" in text or "not a database" in text or isinstance(exc, sqlite3.DatabaseError) and (
        "corrupt" in text or "disk image" in text
    ):
        return FacetwinError(f"{path}: the gallery file is damaged ({text}); restore it from a backup.")
    if "readonly" in text or "unable to open" in text or "disk I/O" in text:
        return FacetwinError(f"{path}: cannot write the gallery file ({text}).")
    return FacetwinError(f"{path}: gallery database error ({text}).")


@contextlib.contextmanager
def sqlite_errors(path: Path):
    """Turn ``sqlite3.Error`` raised inside the block into one sentence naming ``path``."""
    try:
        yield
    except sqlite3.Error as exc:
        raise describe(path, exc) from None


def _check_is_gallery(path: Path, db: sqlite3.Connection) -> bool:
    """True when the file is empty (a new gallery); False when it is a gallery; refuses anything else."""
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    (app_id,) = db.execute("PRAGMA application_id").fetchone()
    if not tables and app_id in (0, APPLICATION_ID):
        return True
    if app_id not in (0, APPLICATION_ID) or not TABLES <= tables or tables - TABLES - {"sqlite_sequence"}:
        raise FacetwinError(
            f"{path}: not a facetwin gallery (an SQLite file of another application); it was left untouched."
        )
    return False


def _create(path: Path, db: sqlite3.Connection) -> None:
    """Make the empty file a gallery in one transaction (another process may be doing the same)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        if _check_is_gallery(path, db):
            db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def connect(path: Path, timeout: float) -> sqlite3.Connection:
    """A connection to the gallery ``path`` (created when missing), after checking it is a facetwin gallery."""
    if path.is_dir():
        raise FacetwinError(f"{path}: is a folder, not a gallery file.")
    try:
        if not path.parent.is_dir():
            path.parent.mkdir(parents=True, exist_ok=True, mode=paths.PRIVATE_FOLDER)
    except OSError as exc:
        raise FacetwinError(f"{path}: cannot create the gallery's folder ({exc.strerror or exc}).") from None
    if not path.exists():
        paths.private_file(path)  # empty: SQLite makes it a database, with this mode
    with sqlite_errors(path):
        db = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
        try:
            db.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
            try:  # (the file is never opened outside SQLite: closing it would drop SQLite's locks)
                fresh = _check_is_gallery(path, db)
            except sqlite3.DatabaseError as exc:
                raise FacetwinError(
                    f"{path}: not a facetwin gallery or damaged ({exc}); it was left untouched."
                ) from None
            if fresh:
                _create(path, db)
            for suffix in ("", "-wal", "-shm"):  # a gallery written by an earlier release may be world-readable
                paths.tighten(f"{path}{suffix}", paths.PRIVATE_FILE)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA secure_delete=ON")
        except BaseException:
            db.close()
            raise
    return db
