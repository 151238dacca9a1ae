"""The index on disk (format 2): Parquet shards of faces, a Parquet table of photos beside each (what they hold:
:mod:`facetwin.collection.records`), and ``manifest.json``, which says what is committed: the model, the archive
root, every committed shard (first face id, faces, photos, first and last photo path), the faces retired since
(earlier versions of photos that changed), counts, unreadable photos and runs.

A commit writes the photos table and the shard (each a temporary file renamed), then the manifest: the commit point.
A run killed before it leaves files the manifest does not name; readers never look at them and the next writer
removes them. Opening an index reads the manifest (and stats each file, below); a shard or photos table is read
when it is needed, and "is this photo indexed?" reads only the photos tables whose path range can hold the photos
asked about. ``face_id`` numbers faces densely in commit order (side tables key on it); ``photo_id`` numbers photo
versions: a photo indexed again after it changed gets a new one and its earlier faces are retired.

Every file is checked (:mod:`facetwin.collection.index_check`) the first time this user's facetwin meets that
version of it, and remembered (:mod:`facetwin.collection.verified`): a file changed since it was written or checked
is checked again before it is used, whatever reads it. The folder and its files are owner-only
(:mod:`facetwin.core.paths`). Format 1 indexes are migrated once, when first opened (:mod:`.migrate`).
"""

from __future__ import annotations

import bisect
import contextlib
import json
import posixpath
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from facetwin.backbones.registry import DEFAULT_BACKBONE
from facetwin.collection import archive
from facetwin.collection import index_check as check
from facetwin.collection.index_check import FORMAT, FORMAT_V1
from facetwin.collection.locking import locked, uninterrupted, writer_lock
from facetwin.collection.records import PHOTO_SCHEMA, Photo, Shard, faces_table, photos_table, schema
from facetwin.collection.verified import Record, identity
from facetwin.core import paths
from facetwin.core.paths import printable
from facetwin.errors import FacetwinError

COUNTS = ("photos", "faces", "errors", "no_face", "retired_faces")
PHOTO_ONLY = ("path", "size", "mtime_ns", "width", "height", "photo_id")  # a face's columns read from its photo


class IndexStore:
    """An index folder opened for writing (one writer at a time: a lock file) or reading. ``archive_root``: where
    the archive is now (``--root``), else found as :func:`facetwin.collection.archive.resolve` says."""

    def __init__(self, root: str | Path, model=None, *, write: bool = False, archive_root: str | Path | None = None):
        self.root = Path(root)
        self.shard_dir = self.root / "shards"
        self.photo_dir = self.root / "photos"
        self.manifest_path = self.root / "manifest.json"
        if not write and not self.manifest_path.is_file():
            raise FacetwinError(f"{self.root}: not a facetwin index (no manifest.json).")
        self._lock = None
        if write:
            paths.private_folder(self.root)
            self._lock = writer_lock(self.root)
        try:
            doc = self._read_manifest()
            if doc.get("format") == FORMAT_V1:
                doc = self._migrated()
            self._load(doc, archive_root)
            if model is not None:
                self._check_model(model)
            self._verify()
        except BaseException:
            self.close()
            raise
        if write:
            self._own()

    # ------------------------------------------------------------------ opening
    def _read_manifest(self) -> dict:
        try:
            text = self.manifest_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as exc:
            raise FacetwinError(f"{self.manifest_path}: unreadable index manifest ({check.reason(exc)}).") from None
        return check.manifest(self.manifest_path, text)

    def _migrated(self) -> dict:
        """A format 1 index made format 2, under the writer's lock (taken for the while when reading)."""
        from facetwin.collection.migrate import migrate

        with contextlib.nullcontext() if self._lock is not None else locked(self.root):
            doc = self._read_manifest()  # another process may have migrated it meanwhile
            return migrate(self.root, doc) if doc.get("format") == FORMAT_V1 else doc

    def _load(self, doc: dict, archive_root) -> None:
        self.manifest = doc
        self.model_info = doc.get("model") or {}
        self.id = doc.get("id") or uuid.uuid4().hex
        self.shards = [Shard.of(entry) for entry in doc.get("shards", [])]
        self._firsts = [s.first for s in self.shards]
        self.next_face_id = int(doc.get("next_face_id", 0))
        self.next_photo_id = int(doc.get("next_photo_id", 0))
        self.retired = np.asarray(doc.get("retired", []), np.int64).reshape(-1, 2)
        self._counts = {key: int(doc.get("counts", {}).get(key, 0)) for key in COUNTS}
        self._errors = list(doc.get("errors", []))
        self.archive_root = archive.resolve(self.root, doc, archive_root)

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

    def version(self, shard: Shard) -> list:
        """What a check of ``shard`` covers: both files' versions, the model and the manifest's entry."""
        key = []
        for file in (self.shard_dir / shard.name, self.photo_dir / shard.photos_name):
            found = identity(file)
            if found is None:
                raise check.bad(file, "missing, although the manifest names it")
            key.append(found)
        facts = {k: v for k, v in shard.entry().items() if k != "prefix"}  # a new root changes no file
        return [*key, self.model_info.get("fingerprint"), self.model_info.get("embedding_dim"), facts]

    def _verify(self) -> None:
        """Check every shard (and photos table) whose version this user's facetwin has not written or checked."""
        self.record = Record(self.id)
        self._trusted: dict[str, list] = {}
        for shard in self.shards:
            self._trust(shard)
        self.record.save()

    def _trust(self, shard: Shard) -> None:
        key = self.version(shard)
        if not self.record.has(shard.name, key):
            self._check(shard)
            if self.version(shard) != key:
                raise check.bad(self.shard_dir / shard.name, "changed while it was read; try again")
            self.record.add(shard.name, key)
        self._trusted[shard.name] = key

    def _check(self, shard: Shard) -> None:
        photos_file, shard_file = self.photo_dir / shard.photos_name, self.shard_dir / shard.name
        photos = _read(photos_file, None, "photos table")
        check.photos_table(photos_file, photos, shard.entry())
        try:
            meta = pq.read_metadata(shard_file)
            arrow_schema = meta.schema.to_arrow_schema()
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise FacetwinError(f"{shard_file}: unreadable index shard ({check.reason(exc)}).") from None
        check.schema(shard_file, arrow_schema, int(self.model_info.get("embedding_dim") or 0))
        first = check.footer(shard_file, meta.metadata, self.model_info)
        if first != shard.first or meta.num_rows != shard.faces:
            raise check.bad(shard_file, f"its {meta.num_rows} faces from id {first} are not the {shard.faces} from id "
                                        f"{shard.first} the manifest gives it")
        table = _read(shard_file, list(schema(1).names), "index shard")
        check.rows(shard_file, table, first, photos["sha256"].to_numpy(zero_copy_only=False),
                   photos["faces"].to_numpy())

    def _own(self) -> None:
        """The index is a store of faces: its folders 0700 and files 0600, also when an earlier release made them
        readable; temporary files of a killed run, and files of a commit it did not finish, are removed."""
        committed = {s.name for s in self.shards} | {s.photos_name for s in self.shards}
        for folder, pattern in ((self.shard_dir, "shard-*.parquet"), (self.photo_dir, "photos-*.parquet")):
            paths.private_folder(folder)
            for stale in folder.glob(".*.tmp"):
                stale.unlink(missing_ok=True)
            for orphan in folder.glob(pattern):
                if orphan.name not in committed:
                    orphan.unlink(missing_ok=True)
        caches = ("ann", "graph", "rows")  # the ANN, the clusters' k-NN graph, the faces' rows for find
        for folder in caches:
            paths.tighten(self.root / folder, paths.PRIVATE_FOLDER)
            for stale in (self.root / folder).glob(".*.tmp"):  # ".NAME.PID.RANDOM.tmp": readers write here too
                paths.remove_stale_temps(stale.parent / stale.name[1:].rsplit(".", 3)[0])
        kept = [*self.shard_dir.iterdir(), *self.photo_dir.iterdir(), self.manifest_path, self.root / ".lock",
                self.root / "clusters.parquet", *(f for folder in caches for f in (self.root / folder).glob("*"))]
        for file in kept:
            paths.tighten(file, paths.PRIVATE_FILE)

    # ------------------------------------------------------------------ reading
    def _file(self, shard: Shard, photos: bool) -> Path:
        """The path of ``shard``'s faces (or photos table), checked again if the file changed since it was."""
        if self.version(shard) != self._trusted.get(shard.name):
            self._trust(shard)
            self.record.save()
        return self.photo_dir / shard.photos_name if photos else self.shard_dir / shard.name

    def shard_table(self, shard: Shard, columns: list[str] | None = None) -> pa.Table:
        """Every row of one shard (retired faces too), checked."""
        table = _read(self._file(shard, False), columns or list(schema(1).names), "index shard")
        if table.num_rows != shard.faces:
            raise check.bad(self.shard_dir / shard.name, "changed while it was read; try again")
        return table

    def photo_table(self, shard: Shard, columns: list[str] | None = None) -> pa.Table:
        """Every photo of one shard (earlier versions too), checked; paths below the archive root."""
        table = _read(self._file(shard, True), columns or list(check.PHOTO_COLUMNS), "photos table")
        if table.num_rows != shard.photos:
            raise check.bad(self.photo_dir / shard.photos_name, "changed while it was read; try again")
        if shard.prefix != "." and "path" in table.column_names:
            joined = pc.binary_join_element_wise(shard.prefix, table["path"], "/")
            table = table.set_column(table.column_names.index("path"), "path", joined)
        return table

    def shard_of(self, face_ids: np.ndarray) -> np.ndarray:
        """The position in :attr:`shards` of the shard holding each face id."""
        return np.searchsorted(np.asarray(self._firsts, np.int64), face_ids, side="right") - 1

    def retired_mask(self, face_ids: np.ndarray) -> np.ndarray:
        """Which of ``face_ids`` belong to photo versions replaced since."""
        face_ids = np.asarray(face_ids, np.int64)
        if not len(self.retired):
            return np.zeros(len(face_ids), bool)
        spans = self.retired[np.argsort(self.retired[:, 0])]
        pos = np.searchsorted(spans[:, 0], face_ids, side="right") - 1
        return (pos >= 0) & (face_ids < spans[np.maximum(pos, 0), 0] + spans[np.maximum(pos, 0), 1])

    def _rows(self, shard: Shard, columns: list[str]) -> pa.Table:
        """Every row of ``shard`` (retired ones too) with ``face_id`` and ``columns``; a photo's own columns
        (``path`` below the archive root, ``size``, ...) come from its photos table."""
        table = self.shard_table(shard, ["face_id", *(c for c in columns if c not in ("face_id", *PHOTO_ONLY))])
        wanted = [c for c in columns if c in PHOTO_ONLY]
        if wanted:
            photos = self.photo_table(shard, [*wanted, "faces"])
            owner = pa.array(np.repeat(np.arange(photos.num_rows), photos["faces"].to_numpy()), pa.int64())
            for name in wanted:
                table = table.append_column(name, photos[name].take(owner))
        return table.select(["face_id", *(c for c in columns if c != "face_id")])

    def read_faces(self, columns: list[str] | None = None, shards: list[Shard] | None = None) -> pa.Table:
        """The current faces (retired ones left out) of ``shards`` (default: all) with ``face_id`` and ``columns``
        (default: all, ``path`` included), in ``face_id`` order."""
        columns = list(columns or [*schema(1).names, "path"])
        tables = [self._rows(shard, columns) for shard in (self.shards if shards is None else shards)]
        if not tables:
            dim = int(self.model_info.get("embedding_dim") or 1)
            photo_fields = [f for f in PHOTO_SCHEMA if f.name in PHOTO_ONLY]
            empty = pa.schema([*schema(dim), *photo_fields]).empty_table()
            return empty.select(["face_id", *(c for c in columns if c != "face_id")])
        table = pa.concat_tables(tables)
        if len(self.retired) and table.num_rows:
            table = table.filter(pa.array(~self.retired_mask(table["face_id"].to_numpy())))
        return table

    def fetch(self, face_ids, columns: list[str]) -> pa.Table:
        """The rows of these face ids (retired or not) with ``face_id`` and ``columns``, in the order given."""
        face_ids = np.asarray(face_ids, np.int64)
        where = self.shard_of(face_ids)
        if len(face_ids) and (where.min() < 0 or face_ids.min() < 0 or face_ids.max() >= self.next_face_id):
            raise FacetwinError(f"{self.root}: the index has no face {int(face_ids.max())}.")
        parts, order = [], []
        for k in np.unique(where):
            rows = np.flatnonzero(where == k)
            local = face_ids[rows] - self.shards[k].first
            parts.append(self._rows(self.shards[k], columns).take(pa.array(local, pa.int64())))
            order.append(rows)
        if not parts:
            return self.read_faces(columns, [])
        table = pa.concat_tables(parts)
        return table.take(pa.array(np.argsort(np.concatenate(order), kind="stable"), pa.int64()))

    def lookup(self, wanted: list[str]) -> dict[str, dict]:
        """"Is this photo indexed?": the latest indexed version of each of these paths (below the root) that the
        index holds, read only from the photos tables whose path range can hold one of them."""
        wanted = sorted(set(wanted))
        found: dict[str, dict] = {}
        if not wanted:
            return found
        value_set = pa.array(wanted, pa.string())
        for shard in self.shards:
            at = bisect.bisect_left(wanted, shard.below(shard.lo))
            if at == len(wanted) or wanted[at] > shard.below(shard.hi):
                continue
            table = self.photo_table(shard)
            for row in table.filter(pc.is_in(table["path"], value_set=value_set)).to_pylist():
                old = found.get(row["path"])
                if old is None or row["photo_id"] > old["photo_id"]:
                    found[row["path"]] = row
        return found

    def rebase(self, root: str) -> None:
        """Make ``root`` (a folder above the archive root) the archive root: paths recorded so far stay as they are
        on disk, each shard noting the folder they now start from (saved with the next manifest)."""
        step = archive.relative(self.archive_root, root)
        if step is None:
            return
        self.shards = [Shard(s.number, s.first, s.faces, s.photos, s.lo, s.hi, posixpath.join(step, s.prefix)
                             if s.prefix != "." else step) for s in self.shards]
        self._errors = [{**e, "path": posixpath.join(step, e["path"])} for e in self._errors]
        for key in ("roots", "photo_roots"):
            self.manifest[key] = sorted({step if r == "." else posixpath.join(step, r)
                                         for r in self.manifest.get(key, [])})
        self.archive_root = root

    def absolute(self, rel: str) -> str:
        """A photo's path below the archive root as a path on this machine."""
        return archive.absolute(self.archive_root or "/", rel)

    def generation(self) -> tuple[int, int]:
        """(shards, retired photo versions): changes whenever the set of faces does."""
        return len(self.shards), len(self.retired)

    def errors(self) -> list[dict]:
        """The photos that could not be read (latest versions), with the reason."""
        return [{"path": self.absolute(e["path"]), "reason": e["reason"]} for e in self._errors]

    def faces_total(self) -> int:
        return self._counts["faces"]

    def counts(self) -> dict:
        return {"photos": self._counts["photos"], "faces": self._counts["faces"], "shards": len(self.shards),
                **{key: self._counts[key] for key in COUNTS[2:]}}

    # ------------------------------------------------------------------ writing
    def commit(self, photos: list[Photo]) -> Path:
        """Commit one shard with these photos' faces (photos table, shard, then the manifest); returns its path."""
        dim = int(self.model_info["embedding_dim"])
        start, photo_id = self.next_face_id, self.next_photo_id
        for photo in photos:
            photo.info.update(faces=len(photo.faces), face_id=start, photo_id=photo_id)
            start, photo_id = start + len(photo.faces), photo_id + 1
        faces = faces_table(photos, self.next_face_id, dim, self.model_info["fingerprint"])
        table = photos_table(photos)
        names = sorted(p.info["path"] for p in photos)
        shard = Shard(self.shards[-1].number + 1 if self.shards else 0, self.next_face_id, faces.num_rows, len(photos),
                      names[0], names[-1])
        shard_path = self.shard_dir / shard.name
        with uninterrupted():  # the files, the manifest and this store's account of them change together
            paths.atomic_write(self.photo_dir / shard.photos_name,
                               lambda tmp: pq.write_table(table, tmp, compression="zstd"), private=True)
            paths.atomic_write(shard_path, lambda tmp: pq.write_table(faces, tmp, compression="zstd"), private=True)
            self._account(photos)
            self.shards.append(shard)
            self._firsts.append(shard.first)
            self.next_face_id, self.next_photo_id = start, photo_id
            self.write_manifest()
            self._trusted[shard.name] = self.version(shard)
            self.record.add(shard.name, self._trusted[shard.name])
            self.record.save()
        return shard_path

    def _account(self, photos: list[Photo]) -> None:
        """Counts, unreadable photos and retired faces after ``photos`` replace what they replace."""
        counts, gone, retired = self._counts, set(), []
        for sign, info in [(-1, p.replaces) for p in photos if p.replaces] + [(1, p.info) for p in photos]:
            counts["photos"] += sign
            counts["faces"] += sign * info["faces"]
            counts["errors"] += sign * bool(info["error"])
            counts["no_face"] += sign * (not info["error"] and info["faces"] == 0)
            if sign < 0:
                gone.add(info["path"])
                if info["faces"]:
                    retired.append([info["face_id"], info["faces"]])
        counts["retired_faces"] += sum(n for _, n in retired)
        self._errors = [e for e in self._errors if e["path"] not in gone]
        self._errors += [{"path": p.info["path"], "reason": p.info["error"]} for p in photos if p.info["error"]]
        if retired:
            self.retired = np.concatenate([self.retired, np.asarray(retired, np.int64)])

    def write_manifest(self, run: dict | None = None) -> dict:
        """Rewrite ``manifest.json`` (and append ``run`` to its list of runs): the commit point of every change."""
        manifest = dict(self.manifest)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        manifest.setdefault("created", now)
        manifest.update(
            format=FORMAT, id=self.id, updated=now, model=self.model_info, root=self.archive_root,
            root_from_index=archive.from_index(self.root, self.archive_root), counts=self.counts(),
            next_face_id=self.next_face_id, next_photo_id=self.next_photo_id,
            shards=[s.entry() for s in self.shards], retired=self.retired.tolist(), errors=self._errors,
        )
        if run is not None:
            manifest["runs"] = [*manifest.get("runs", []), run]
        paths.atomic_write_text(self.manifest_path, json.dumps(manifest, separators=(",", ":")), private=True)
        self.manifest = manifest
        return manifest

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def _read(file: Path, columns: list[str] | None, what: str) -> pa.Table:
    try:
        return pq.read_table(file, columns=columns).replace_schema_metadata(None)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise FacetwinError(f"{file}: unreadable {what} ({check.reason(exc)}).") from None


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


__all__ = ["IndexStore", "index_model"]
