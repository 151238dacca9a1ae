"""The driver's end of both engines: rows in any order → complete photos → shards, each photo once."""

from __future__ import annotations

import time

import numpy as np

from facetwin.collection.locking import uninterrupted
from facetwin.collection.records import Photo
from facetwin.collection.shards import IndexStore

DEFAULT_SHARD_PHOTOS = 1000


class ShardWriter:
    """Collects rows until each photo has all its faces, skips photos already committed, writes full shards.

    Rows may come twice (a Ray task retried after a lost worker): a face is keyed by (path, SHA-256, face
    number), and a photo already committed or waiting is never taken again. ``earlier``: the version of each path
    (below the archive root) that the index held before this run; a new version replaces it.
    """

    def __init__(self, store: IndexStore, *, shard_photos: int = DEFAULT_SHARD_PHOTOS, total: int = 0,
                 progress: bool = True, earlier: dict[str, dict] | None = None):
        self.store = store
        self.shard_photos = max(1, int(shard_photos))
        self.earlier = earlier or {}
        self.open: dict[tuple[str, str], Photo] = {}
        self.ready: dict[tuple[str, str], Photo] = {}
        self.committed: set[tuple[str, str]] = set()
        self.unreadable = 0  # photos of this run that could not be read
        self.done = 0
        self.faces = 0
        self.duplicates = 0
        self.started = time.perf_counter()
        self.first: float | None = None  # seconds until the first photo was complete (start-up cost)
        self.bar = None
        if progress:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="photo", desc="indexing", smoothing=0.1, dynamic_ncols=True)

    def add(self, batch: dict) -> None:
        """Take a batch of stage-2 rows (dict of equal-length arrays)."""
        for i in range(len(batch["path"])):
            path, digest = str(batch["path"][i]), str(batch["sha256"][i])
            key = (path, digest)
            before = self.earlier.get(path)
            if key in self.ready or key in self.committed or (digest and before and before["sha256"] == digest):
                self.duplicates += 1
                continue
            n_faces, face = int(batch["n_faces"][i]), int(batch["face"][i])
            photo = self.open.get(key)
            if photo is None:
                info = {
                    "path": path, "sha256": digest, "size": int(batch["size"][i]),
                    "mtime_ns": int(batch["mtime_ns"][i]),
                    "width": int(batch["width"][i]), "height": int(batch["height"][i]), "faces": n_faces,
                    "face_id": -1, "error": str(batch["error"][i] or ""),
                }
                photo = self.open[key] = Photo(info, replaces=before)
            if face >= 0:
                if any(f["face"] == face for f in photo.faces):
                    self.duplicates += 1
                    continue
                photo.faces.append({
                    "face": face, "box": np.asarray(batch["box"][i], np.float32),
                    "landmarks": np.asarray(batch["landmarks"][i], np.float32).reshape(10),
                    "score": float(batch["score"][i]), "embedding": np.asarray(batch["embedding"][i], np.float32),
                })
            if len(photo.faces) >= n_faces:
                del self.open[key]
                self.ready[key] = photo
                if self.first is None:
                    self.first = time.perf_counter() - self.started
                self.faces += len(photo.faces)
                if self.bar is not None:
                    self.bar.update(1)
                if len(self.ready) >= self.shard_photos:
                    self.flush()

    def flush(self) -> None:
        """Commit the complete photos waiting (one shard, with the manifest)."""
        if not self.ready:
            return
        with uninterrupted():  # a Ctrl-C waits: the shard and the list of photos still waiting change together
            self.store.commit(list(self.ready.values()))
            self.done += len(self.ready)
            self.unreadable += sum(1 for photo in self.ready.values() if photo.info["error"])
            self.committed.update(self.ready)
            self.ready.clear()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started


__all__ = ["ShardWriter", "DEFAULT_SHARD_PHOTOS"]
