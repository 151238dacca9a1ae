"""The index on disk: Parquet shards of faces, each committed whole, and a manifest that summarises them.

``INDEX_DIR/shards/shard-NNNNNN.parquet`` holds one row per face (``face_id``, ``path``, ``sha256``, ``face``,
``box`` x/y/w/h, ``landmarks`` 5×(x, y), ``score``, ``embedding``) and, in its footer metadata
(``facetwin.photos``), every photo it covers, faces or not, with the reason when a photo could not be read.
A shard is written to a temporary file and renamed, so it is there whole or not at all, and a Ctrl-C waits
until the commit (file and bookkeeping) is done; the shards are the truth and ``manifest.json`` (model
fingerprint, counts, errors, runs) is rewritten from them after each one. ``face_id`` numbers faces densely in the
order they were committed: side tables (clusters, names) key on it. Everything read back goes through the checks
of :mod:`facetwin.collection.index_check`; the folder and its files are owner-only (:mod:`facetwin.core.paths`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from facetwin.backbones.registry import DEFAULT_BACKBONE
from facetwin.collection import index_check as check
from facetwin.collection.index_check import FINGERPRINT_KEY, FIRST_KEY, FORMAT, PHOTOS_KEY
from facetwin.core import paths
from facetwin.core.paths import printable
from facetwin.errors import FacetwinError

CHECKED_LIMIT = 100_000  # shard versions remembered as checked (an index of 100 M photos at 1,000 a shard)
_CHECKED: set[tuple[int, ...]] = set()  # (device, inode, size, mtime, ctime) of shard files whose rows passed
PHOTO_FIELDS = ("path", "sha256", "size", "mtime_ns", "width", "height", "faces", "face_id", "error")


def schema(dim: int) -> pa.Schema:
    return pa.schema([
        ("face_id", pa.int64()), ("path", pa.string()), ("sha256", pa.string()), ("face", pa.int32()),
        ("box", pa.list_(pa.float32(), 4)), ("landmarks", pa.list_(pa.float32(), 10)), ("score", pa.float32()),
        ("embedding", pa.list_(pa.float32(), dim)),
    ])


@dataclass
class Photo:
    """A photo complete with all its faces, ready to be committed."""

    info: dict  # PHOTO_FIELDS
    faces: list[dict] = field(default_factory=list)  # face, box, landmarks, score, embedding


class IndexStore:
    """An index folder opened for writing (one writer at a time: a lock file) or reading."""

    def __init__(self, root: str | Path, model=None, *, write: bool = False):
        self.root = Path(root)
        self.shard_dir = self.root / "shards"
        self.manifest_path = self.root / "manifest.json"
        if not write and not self.manifest_path.is_file():
            raise FacetwinError(f"{self.root}: not a facetwin index (no manifest.json).")
        self._lock = None
        if write:
            paths.private_folder(self.root)
            self._lock = open(paths.private_file(self.root / ".lock"), "w")  # noqa: SIM115 - held for the store's life
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                self.close()
                raise FacetwinError(f"{self.root}: another facetwin run is writing this index.") from None
        try:
            self.manifest = self._read_manifest()
            self.model_info = self.manifest.get("model") or {}
            if model is not None:
                self._check_model(model)
            self.reload()
        except BaseException:
            self.close()
            raise
        if write:
            self._own()

    def _own(self) -> None:
        """The index is a store of faces: its folders 0700 and files 0600, also when an earlier release made them
        readable; temporary files of a killed run are removed."""
        paths.private_folder(self.shard_dir)
        for stale in self.shard_dir.glob(".*.tmp"):
            stale.unlink(missing_ok=True)
        for file in (*self.shards, self.manifest_path, *self.root.glob("faces.hnsw*"), self.root / "clusters.parquet"):
            paths.tighten(file, paths.PRIVATE_FILE)

    # ------------------------------------------------------------------ reading
    def _read_manifest(self) -> dict:
        try:
            text = self.manifest_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as exc:
            raise FacetwinError(f"{self.manifest_path}: unreadable index manifest ({check.reason(exc)}).") from None
        return check.manifest(self.manifest_path, text)

    def _check_model(self, model) -> None:
        info = {
            "source": model.source, "fingerprint": model.fingerprint, "distance": model.distance,
            "threshold": model.threshold, "embedding_dim": int(model.embedding_dim), "description": model.description,
        }
        if self.model_info and self.model_info.get("fingerprint") != model.fingerprint:
            raise FacetwinError(
                f"{self.root}: this index holds embeddings of model '{self.model_info.get('source')}' and cannot be "
                f"extended with another model ('{info['source']}')."
            )
        self.model_info = self.model_info or info

    def shard_files(self) -> list[Path]:
        return sorted(self.shard_dir.glob("shard-*.parquet")) if self.shard_dir.is_dir() else []

    def reload(self) -> None:
        """Read every committed shard's footer: the photos indexed, face ids used, errors."""
        self.photos: dict[str, dict] = {}  # path -> its latest version
        self.retired: list[dict] = []  # earlier versions of photos that changed since (their faces are left out)
        self.face_rows = 0
        self.next_face_id = 0
        self.shards = self.shard_files()
        self._footers: dict[Path, tuple[int, int, list[dict]]] = {}  # shard -> first face id, rows, photos
        dim = int(self.model_info.get("embedding_dim") or 0)
        for shard in self.shards:
            try:
                meta = pq.read_metadata(shard)
                arrow_schema = meta.schema.to_arrow_schema()
            except (OSError, ValueError, pa.ArrowException) as exc:
                raise FacetwinError(f"{shard}: unreadable index shard ({check.reason(exc)}).") from None
            check.schema(shard, arrow_schema, dim)
            first, photos = check.footer(shard, meta.metadata, meta.num_rows, self.model_info)
            self._footers[shard] = first, meta.num_rows, photos
            self.face_rows += meta.num_rows
            self.next_face_id = max(self.next_face_id, first + meta.num_rows)
            for info in photos:
                self._record(info)
        check.ranges([(shard, first, rows) for shard, (first, rows, _) in self._footers.items()])

    def _record(self, info: dict) -> None:
        old = self.photos.get(info["path"])
        if old is not None:
            self.retired.append(old)
        self.photos[info["path"]] = info

    def generation(self) -> tuple[int, int]:
        """(shards, retired photo versions): changes whenever the set of faces does."""
        return len(self.shards), len(self.retired)

    def known(self, path: str, sha256: str) -> bool:
        info = self.photos.get(path)
        return info is not None and info["sha256"] == sha256

    def errors(self) -> list[dict]:
        return [{"path": p["path"], "reason": p["error"]} for p in self.photos.values() if p["error"]]

    def read_faces(self, columns: list[str] | None = None) -> pa.Table:
        """Every face of the index (retired photos left out), in ``face_id`` order."""
        dim = int(self.model_info.get("embedding_dim") or 0)
        if columns is not None and "face_id" not in columns:
            columns = ["face_id", *columns]
        tables = []
        for shard in self.shards:
            first, rows, photos = self._footers[shard]
            try:
                identity = _identity(shard)
                if identity not in _CHECKED:  # every column, once per version of the file, whatever is read
                    whole = pq.read_table(shard).replace_schema_metadata(None)
                    if whole.num_rows != rows:
                        raise FacetwinError(f"{shard}: the shard changed while it was read; try again.")
                    check.rows(shard, whole, first, photos)
                    if len(_CHECKED) >= CHECKED_LIMIT:
                        _CHECKED.clear()
                    _CHECKED.add(identity)
                part = pq.read_table(shard, columns=columns).replace_schema_metadata(None)
            except (OSError, ValueError, pa.ArrowException) as exc:
                raise FacetwinError(f"{shard}: unreadable index shard ({check.reason(exc)}).") from None
            if part.num_rows != rows:
                raise FacetwinError(f"{shard}: the shard changed while it was read; try again.")
            tables.append(part)
        table = pa.concat_tables(tables) if tables else schema(dim).empty_table().select(columns or schema(dim).names)
        if self.retired and table.num_rows and "face_id" in table.column_names:
            gone = [np.arange(r["face_id"], r["face_id"] + r["faces"]) for r in self.retired if r["faces"]]
            if gone:
                drop = np.isin(table["face_id"].to_numpy(), np.concatenate(gone))
                table = table.filter(pa.array(~drop))
        return table

    # ------------------------------------------------------------------ writing
    def commit(self, photos: list[Photo]) -> Path:
        """Write one shard atomically with these photos' faces; returns its path."""
        dim = int(self.model_info["embedding_dim"])
        rows = [(p, f) for p in photos for f in sorted(p.faces, key=lambda f: f["face"])]
        start = self.next_face_id
        for photo in photos:
            photo.info["faces"], photo.info["face_id"] = len(photo.faces), start
            start += len(photo.faces)
        ids = np.arange(self.next_face_id, self.next_face_id + len(rows), dtype=np.int64)

        def column(key, dtype, width=None):
            values = np.asarray([f[key] for _, f in rows], dtype=dtype)
            if width is None:
                return pa.array(values)
            flat = pa.array(values.reshape(-1) if len(rows) else np.zeros(0, dtype))
            return pa.FixedSizeListArray.from_arrays(flat, width)

        table = pa.Table.from_arrays(
            [pa.array(ids), pa.array([p.info["path"] for p, _ in rows], pa.string()),
             pa.array([p.info["sha256"] for p, _ in rows], pa.string()), column("face", np.int32),
             column("box", np.float32, 4), column("landmarks", np.float32, 10), column("score", np.float32),
             column("embedding", np.float32, dim)],
            schema=schema(dim),
        )
        footer = [{k: p.info[k] for k in PHOTO_FIELDS} for p in photos]
        meta = {
            PHOTOS_KEY: json.dumps(footer).encode(),
            FIRST_KEY: str(self.next_face_id).encode(),
            FINGERPRINT_KEY: str(self.model_info["fingerprint"]).encode(),
        }
        table = table.replace_schema_metadata(meta)
        number = int(self.shards[-1].stem.split("-")[1]) + 1 if self.shards else 0
        path = self.shard_dir / f"shard-{number:06d}.parquet"
        with uninterrupted():  # the shard on disk and this store's account of it change together
            paths.atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"), private=True)
            self.shards.append(path)
            self._footers[path] = self.next_face_id, len(rows), footer
            self.next_face_id += len(rows)
            self.face_rows += len(rows)
            for photo in photos:
                self._record(dict(photo.info))
        return path

    def faces_total(self) -> int:
        return sum(p["faces"] for p in self.photos.values())

    def counts(self) -> dict:
        photos = list(self.photos.values())
        return {
            "photos": len(photos), "faces": sum(p["faces"] for p in photos), "shards": len(self.shards),
            "errors": sum(1 for p in photos if p["error"]),
            "no_face": sum(1 for p in photos if not p["error"] and p["faces"] == 0),
            "retired_faces": self.face_rows - sum(p["faces"] for p in photos),
        }

    def write_manifest(self, run: dict | None = None) -> dict:
        """Rewrite ``manifest.json`` from the shards (and append ``run`` to its list of runs)."""
        manifest = dict(self.manifest)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        manifest.setdefault("created", now)
        manifest.update(
            format=FORMAT, updated=now, model=self.model_info, counts=self.counts(), next_face_id=self.next_face_id,
            shards=[s.name for s in self.shards], errors=self.errors(),
        )
        if run is not None:
            manifest["runs"] = [*manifest.get("runs", []), run]
        paths.atomic_write_text(self.manifest_path, json.dumps(manifest, indent=1, default=str), private=True)
        self.manifest = manifest
        return manifest

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def index_model(root: str | Path, record: dict, given=None):
    """The model that made the index at ``root`` (``record``: the manifest's model; ``given``: a model or source
    the caller names instead), checked against the fingerprint the manifest records; one sentence naming the
    manifest when it cannot be loaded here or is another model."""
    from facetwin.loading import load

    manifest = Path(root) / "manifest.json"
    source = str(record.get("source") or DEFAULT_BACKBONE)
    try:
        model = load(given or source) if given is None or isinstance(given, str | Path) else given
    except FacetwinError as exc:
        raise FacetwinError(f"{manifest}: the index's model '{printable(source)}' cannot be loaded here "
                            f"({str(exc).rstrip('.')}).") from None
    if model.fingerprint != record.get("fingerprint"):
        which = "the one given" if given is not None else f"what '{printable(source)}' is here now"
        raise FacetwinError(f"{manifest}: this index was made with model '{printable(source)}', not with {which}.")
    return model


def _identity(path: Path) -> tuple[int, ...]:
    """What tells one version of a file from another: any rewrite moves its ctime."""
    st = path.stat()
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


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


__all__ = ["IndexStore", "Photo", "schema", "index_model", "uninterrupted", "FORMAT", "PHOTO_FIELDS"]
