"""Which versions of an index's files this user's facetwin wrote or checked, so that opening an index reads none of
them again, while a file changed since (by a crash, by hand, by someone else) is checked again before it is used.

A version of a file is its (device, inode, size, mtime, ctime): any rewrite moves its ctime, which no program can
set back. The record is kept in ``$FACETWIN_HOME/verified/INDEX_ID.json`` (owner-only), not in the index folder:
whoever can write the index cannot vouch for a file they crafted there. An index copied (new inodes), or opened by
another user or on another machine, has each of its files checked once. The record is a cache: when it cannot be
read or written, files are simply checked again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from facetwin.core import paths
from facetwin.errors import FacetwinError


def identity(path: str | Path) -> list[int] | None:
    """``[device, inode, size, mtime_ns, ctime_ns]`` of the file at ``path`` (None when it is not there)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


class Record:
    """The checked versions of one index's files: name -> what was checked (identities and the facts checked)."""

    def __init__(self, index_id: str):
        self.path = paths.home() / "verified" / f"{index_id}.json"
        self.changed = False
        try:
            entries = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            entries = {}
        self.entries: dict[str, list] = entries if isinstance(entries, dict) else {}

    def has(self, name: str, key: list) -> bool:
        return self.entries.get(name) == key

    def add(self, name: str, key: list) -> None:
        if self.entries.get(name) != key:
            self.entries[name] = key
            self.changed = True

    def save(self) -> None:
        """Write the record if it changed (owner-only, atomically); a failure only means checking again later."""
        if not self.changed:
            return
        try:
            paths.private_folder(self.path.parent)
            paths.atomic_write_text(self.path, json.dumps(self.entries, separators=(",", ":")), private=True)
            self.changed = False
        except FacetwinError:
            pass


__all__ = ["Record", "identity"]
