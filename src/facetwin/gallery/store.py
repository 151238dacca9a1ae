"""A gallery of known people in SQLite: enroll, identify (open set), list, remove for good.

Embeddings (float32) are stored with the model fingerprint that made them; a gallery refuses another
model. Search is exact below ``index_threshold`` embeddings and an HNSW index (``index.py``) above it.
No face images are stored. Safe to share between threads (one connection per thread) and processes
(WAL, transactions, busy timeout).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from facetwin.backbones.registry import DEFAULT_BACKBONE
from facetwin.core import distances as D
from facetwin.core.paths import sha256_file
from facetwin.core.validate import person_name
from facetwin.core.validate import top_k as check_top_k
from facetwin.errors import FacetwinError
from facetwin.gallery import db as gdb
from facetwin.gallery import erase
from facetwin.gallery.db import sqlite_errors
from facetwin.gallery.index import AnnIndex
from facetwin.gallery.results import IDENTIFY_TOP_K, MAX_IDENTIFY_TOP_K, IdentifyResult, Match, PersonInfo
from facetwin.loading import load
from facetwin.model import Model

DB_TIMEOUT = 60.0  # seconds a call waits for another process's lock (the service uses a few seconds)
INDEX_THRESHOLD = 20_000  # embeddings; below this an exact matrix product answers in well under a millisecond



@dataclass
class _Snapshot:
    generation: int
    ids: np.ndarray  # embedding row ids
    owners: np.ndarray  # person name per row
    vectors: np.ndarray  # (N, D) float32, normalised when the distance is cosine
    index: AnnIndex | None = field(default=None)


def _sql(method):
    """Gallery methods raise one sentence naming the file for any SQLite error."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with sqlite_errors(self.path):
            return method(self, *args, **kwargs)

    return wrapper


def _iso(seconds: float) -> str:
    """A Unix time as ISO 8601 in UTC, to the second."""
    return datetime.fromtimestamp(float(seconds), UTC).isoformat(timespec="seconds")


def _sha256(source) -> str | None:
    """Digest of an enrolled photo's bytes (None for arrays and PIL images, which have no file)."""
    if isinstance(source, bytes | bytearray):
        return hashlib.sha256(source).hexdigest()
    if isinstance(source, str | Path):
        return sha256_file(source)
    return None


class Gallery:
    """People and their embeddings in one SQLite file."""

    def __init__(
        self,
        path: str | Path,
        model: Model | str | None = None,
        *,
        index_threshold: int = INDEX_THRESHOLD,
        create: bool = True,
        timeout: float = DB_TIMEOUT,
    ):
        """Open (``create=True``: or create) the gallery file ``path``; ``model`` defaults to the one it records.
        ``timeout``: seconds to wait for another process's lock before :class:`GalleryBusy`."""
        self.path = Path(path)
        self.timeout = float(timeout)
        if not create and not self.path.is_file():
            raise FacetwinError(f"{self.path}: no such gallery (`facetwin enroll` creates one).")
        self.index_threshold = index_threshold
        self._local = threading.local()
        self._snapshot: _Snapshot | None = None
        self._snapshot_lock = threading.Lock()
        self._model: Model | None = None
        self._model_lock = threading.Lock()
        with sqlite_errors(self.path):
            self._db()  # open (or create) and check the file now, so a bad path fails here
        if model is not None:
            with sqlite_errors(self.path):
                self._model = self._bind_model(model)

    @property
    def model(self) -> Model:
        """The gallery's model: the one given, else the one the file records, loaded on first use (listing,
        counting and removing people never load it)."""
        with self._model_lock:
            if self._model is None:
                with sqlite_errors(self.path):
                    self._model = self._bind_model(None)
            return self._model

    # ------------------------------------------------------------------ storage
    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = gdb.connect(self.path, self.timeout)
            erase.resume(db, self.path)
            self._local.db = db
        return db

    @contextlib.contextmanager
    def _transaction(self):
        """A write transaction (``BEGIN IMMEDIATE``), committed at the end or rolled back on error."""
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    @contextlib.contextmanager
    def _fence(self, removals: int):
        """For the index writer: holds the write lock and yields whether no removal happened since ``removals``."""
        try:
            with self._transaction() as db:
                yield self._counter(db, "removals") == removals
        except sqlite3.OperationalError:
            yield False  # could not take the lock: do not save

    def _bind_model(self, model: Model | str | None) -> Model:
        if model is None:
            recorded = dict(self._db().execute("SELECT key, value FROM meta").fetchall())
            model = recorded.get("model_source", DEFAULT_BACKBONE)
        model = load(model) if isinstance(model, str | Path) else model
        source = model.source
        with self._transaction() as db:  # first writer records the model; everyone then compares with it
            db.executemany(
                "INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)",
                [
                    ("model_fingerprint", model.fingerprint),
                    ("model_source", source),
                    ("model_description", json.dumps(model.description, default=str)),
                    ("generation", "0"),
                    ("removals", "0"),
                ],
            )
            recorded = dict(db.execute("SELECT key, value FROM meta").fetchall())
        if recorded["model_fingerprint"] != model.fingerprint:
            raise FacetwinError(
                f"{self.path}: this gallery holds embeddings of model '{recorded['model_source']}' "
                f"and cannot be searched or extended with another model ('{source}')."
            )
        return model

    def _counter(self, db: sqlite3.Connection, key: str) -> int:
        """A meta counter: ``generation`` moves on every change, ``removals`` on every removal."""
        row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    # ------------------------------------------------------------------ enroll
    def enroll(self, person: str, images, *, names=None, digests=None, face: str | None = None) -> int:
        """Embed the chosen face of each image (``face``: main or largest, default the model's rule) and add them
        to ``person``, all or none; returns how many were added (a photo already enrolled for ``person`` is
        skipped, see :meth:`enroll_many`).

        ``names`` label the images in messages (e.g. upload file names); ``digests`` are the SHA-256 of their
        bytes when the images are decoded arrays (files and bytes are hashed here).
        """
        images, person = list(images), person_name(person)
        if not images:
            raise FacetwinError(f"no images given to enroll '{person}'.")
        vectors = self.model.embed(images, names=names, face=face)
        sources = list(digests) if digests is not None else [_sha256(i) for i in images]
        return self.enroll_embeddings(person, vectors, sources=sources)

    def enroll_embeddings(self, person: str, embeddings, sources: list[str | None] | None = None) -> int:
        """Add ready-made embeddings (made by this gallery's model) to ``person`` in one transaction."""
        return self.enroll_many({person: embeddings}, {person: sources} if sources else None)

    @_sql
    def enroll_many(self, people: dict, sources: dict | None = None) -> int:
        """Add embeddings of several people (``name -> (k, D) array``) in one transaction; returns how many.

        ``sources`` (``name -> list of photo SHA-256 or None``): an embedding of a photo already enrolled for that
        person (or given twice) is skipped, so enrolling the same photos again adds nothing."""
        dim = self.model.embedding_dim
        now = time.time()
        rows = []
        people = {person_name(person): embeddings for person, embeddings in people.items()}
        for person, embeddings in people.items():
            vectors = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
            if vectors.ndim != 2 or vectors.shape[1] != dim:
                raise FacetwinError(f"embeddings of '{person}' have shape {vectors.shape}; this model makes {dim}.")
            if not np.isfinite(vectors).all():
                raise FacetwinError(f"embeddings of '{person}' hold NaN or infinite values; nothing was enrolled.")
            digests = (sources or {}).get(person) or [None] * len(vectors)
            rows += [(person, v.tobytes(), d) for v, d in zip(vectors, digests, strict=True)]
        with self._transaction() as db:
            seen = {
                (name, digest) for name in {name for name, _, digest in rows if digest}
                for (digest,) in db.execute(
                    "SELECT e.source_sha256 FROM embeddings e JOIN people p ON p.id = e.person_id "
                    "WHERE p.name = ? AND e.source_sha256 IS NOT NULL", (name,),
                )
            }
            fresh = []
            for name, blob, digest in rows:
                if digest is None or (name, digest) not in seen:
                    fresh.append((name, blob, digest))
                    seen.add((name, digest))
            rows = fresh
            db.executemany(
                "INSERT OR IGNORE INTO people(name, created) VALUES (?, ?)", [(p, now) for p in people]
            )
            db.executemany(
                "INSERT INTO embeddings(person_id, vector, source_sha256, created) "
                "SELECT id, ?, ?, ? FROM people WHERE name = ?",
                [(blob, digest, now, name) for name, blob, digest in rows],
            )
            db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
        return len(rows)

    # ------------------------------------------------------------------ search
    def identify(
        self, image, top_k: int = IDENTIFY_TOP_K, *, name: str | None = None, face: str | None = None
    ) -> IdentifyResult:
        """Who is the chosen face in ``image`` (``face``: main or largest)? Open set: ``"unknown"`` beyond the
        model's threshold."""
        crop = self.model.face_crops(image, no_face="error", name=name, face=face)[0]
        vector = self.model.embed_crops(crop.crop[None])[0]
        result = self.search(vector, top_k=top_k)
        result.face = crop.to_dict()
        return result

    @_sql
    def search(self, vector, top_k: int = IDENTIFY_TOP_K) -> IdentifyResult:
        """The ``top_k`` nearest people to an embedding (each person's closest embedding counts)."""
        check_top_k(top_k, "top_k", MAX_IDENTIFY_TOP_K)
        snap = self._current()
        threshold = float(self.model.threshold)
        if snap.vectors.shape[0] == 0:
            return IdentifyResult("unknown", [], "exact", threshold)
        query = self._prepare(np.asarray(vector, dtype=np.float32)[None])
        if snap.index is not None:
            rows, distances = snap.index.search(query, max(top_k * 8, 32))
            method = snap.index.name
        else:
            rows, distances = self._exact(snap.vectors, query, max(top_k * 8, 32))
            method = "exact"
        matches: list[Match] = []
        seen: set[str] = set()
        for row, d in zip(rows, distances, strict=True):
            owner = str(snap.owners[row])
            if owner in seen:
                continue
            seen.add(owner)
            matches.append(Match(owner, float(d), float(self.model.probability(d))))
            if len(matches) == top_k:
                break
        best = matches[0]
        person = best.person if np.isfinite(threshold) and best.distance <= threshold else "unknown"
        return IdentifyResult(person, matches, method, threshold)

    def _prepare(self, vectors: np.ndarray) -> np.ndarray:
        return D.to_query(vectors, self.model.distance)

    def _exact(self, vectors: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest rows by the model's distance, nearest first."""
        distances = D.one_to_many(vectors, query[0], self.model.distance)
        k = min(k, distances.size)
        nearest = np.argpartition(distances, k - 1)[:k]
        nearest = nearest[np.argsort(distances[nearest], kind="stable")]
        return nearest, distances[nearest]

    @_sql
    def ann_index(self) -> AnnIndex | None:
        """The approximate index of the current gallery (None while search is exact)."""
        return self._current().index

    def _current(self) -> _Snapshot:
        """Vectors (and index) for the database's current generation, reloaded when it moved on."""
        db = self._db()
        dim = self.model.embedding_dim
        generation = self._counter(db, "generation")
        with self._snapshot_lock:
            if self._snapshot is not None and self._snapshot.generation == generation:
                return self._snapshot
            db.execute("BEGIN")  # one read snapshot: the rows, their generation and removal count agree
            try:
                generation, removals = self._counter(db, "generation"), self._counter(db, "removals")
                rows = db.execute(
                    "SELECT e.id, p.name, e.vector FROM embeddings e JOIN people p ON p.id = e.person_id "
                    "ORDER BY e.id"
                ).fetchall()
            finally:
                db.execute("COMMIT")
            if any(len(r[2]) != 4 * dim for r in rows):
                raise FacetwinError(f"{self.path}: the gallery file is damaged (an embedding is not {dim} floats).")
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            owners = np.array([r[1] for r in rows], dtype=object)
            vectors = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32).reshape(len(rows), dim)
            vectors = self._prepare(vectors) if len(rows) else np.zeros((0, dim), np.float32)
            index = None
            if len(rows) >= self.index_threshold:
                index = AnnIndex.load_or_build(
                    self.path, generation, removals, ids, vectors, self.model.distance,
                    fence=lambda: self._fence(removals),
                )
            self._snapshot = _Snapshot(generation, ids, owners, vectors, index)
            return self._snapshot

    # ------------------------------------------------------------------ manage
    @_sql
    def people(self) -> list[PersonInfo]:
        rows = self._db().execute(
            "SELECT p.name, COUNT(e.id), p.created FROM people p LEFT JOIN embeddings e ON e.person_id = p.id "
            "GROUP BY p.id ORDER BY p.name"
        )
        return [PersonInfo(name, count, _iso(created)) for name, count, created in rows]

    @_sql
    def remove(self, person: str, *, timeout: float | None = None) -> int:
        """Erase ``person`` and their embeddings for good; returns rows removed.

        Secure delete, the saved index and its temporary copies deleted, VACUUM, and a WAL checkpoint that is
        checked and retried for ``timeout`` seconds (default: the gallery's); if another process still reads
        an old snapshot then, :class:`GalleryBusy` says so (the next open or change of the gallery finishes).
        """
        with self._transaction() as db:
            (count,) = db.execute(
                "SELECT COUNT(*) FROM embeddings e JOIN people p ON p.id = e.person_id WHERE p.name = ?", (person,)
            ).fetchone()
            found = db.execute("DELETE FROM people WHERE name = ?", (person,)).rowcount
            if not found:
                raise FacetwinError(f"{self.path}: no person named '{person}'.")
            db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key IN ('generation', 'removals')")
            erase.mark(db)
        AnnIndex.discard(self.path)  # after the commit: a concurrent index writer's fence now refuses to save
        with self._snapshot_lock:
            self._snapshot = None
        erase.finish(self._db(), self.path, self.timeout if timeout is None else timeout)
        return count

    @_sql
    def sources(self) -> set[tuple[str, str]]:
        """(person, photo SHA-256) of every embedding enrolled from a known photo."""
        rows = self._db().execute(
            "SELECT p.name, e.source_sha256 FROM embeddings e JOIN people p ON p.id = e.person_id "
            "WHERE e.source_sha256 IS NOT NULL"
        )
        return {(name, digest) for name, digest in rows}

    @_sql
    def stats(self) -> dict:
        db = self._db()
        (people,) = db.execute("SELECT COUNT(*) FROM people").fetchone()
        (embeddings,) = db.execute("SELECT COUNT(*) FROM embeddings").fetchone()
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        return {
            "gallery": str(self.path),
            "people": people,
            "embeddings": embeddings,
            "model": meta.get("model_source"),
            "model_fingerprint": meta.get("model_fingerprint"),
            "search": "exact" if embeddings < self.index_threshold else AnnIndex.NAME,
            "index_threshold": self.index_threshold,
            "bytes": self.path.stat().st_size,
        }
