"""The photos behind an index's faces, read back only while they are still the photos that were indexed.

An index names its photos by path, and an index can be crafted or its photos replaced (a re-pointed symlink, a
file copied over), so a photo is read only when

- its real path (every symlink followed, as the opened file itself says through ``/proc/self/fd``) lies inside
  one of the index's roots (the folders given to ``facetwin index``, also resolved), and
- it is a regular file whose size and SHA-256 are still the ones indexed.

Anything else gets the same sentence, which names no path: whether a file outside the roots exists is not told.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from facetwin.errors import FacetwinError

MAX_BYTES = 64 * 2**20  # a photo file larger than this is not read back (a 64 MP JPEG is about 20 MB)


class Unavailable(FacetwinError):
    """An indexed photo that cannot be shown (moved, changed, or outside the indexed folders)."""


def resolved_roots(roots: list[str]) -> tuple[str, ...]:
    """The index's roots with every symlink followed."""
    return tuple(os.path.realpath(r) for r in roots)


def _inside(real: str, roots: tuple[str, ...]) -> bool:
    return any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


def signature(path: str, roots: tuple[str, ...]) -> tuple[int, int, int, int, int] | None:
    """``(device, inode, size, mtime_ns, ctime_ns)`` of the photo at ``path`` if it is a regular file inside
    ``roots`` now, else None: what a cache of anything made from the photo keys on (any change of the file moves
    its ctime, which no program can set back)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, ValueError):
        return None
    try:
        return _checked(fd, roots)
    finally:
        os.close(fd)


def _checked(fd: int, roots: tuple[str, ...]) -> tuple[int, int, int, int, int] | None:
    st = os.fstat(fd)
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or not _inside(real, roots):
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def read_original(path: str, size: int, sha256: str, roots: tuple[str, ...], *, what: str = "this face",
                  max_bytes: int = MAX_BYTES) -> tuple[bytes, tuple]:
    """The bytes of the indexed photo at ``path`` and their :func:`signature`, if the file is still the one
    indexed (``size`` bytes hashing to ``sha256``) and inside ``roots``; else :class:`Unavailable`."""
    gone = Unavailable(f"the photo of {what} is not available as it was indexed (moved, changed, or outside the "
                       "indexed folders).")
    if not sha256 or size < 0 or size > max_bytes:
        raise gone
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, ValueError):
        raise gone from None
    try:
        sign = _checked(fd, roots)
        if sign is None or sign[2] != size:
            raise gone
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(size + 1)
    except OSError:
        raise gone from None
    finally:
        os.close(fd)
    if len(data) != size or hashlib.sha256(data).hexdigest() != sha256:
        raise gone
    return data, sign


def covered(path: str, roots: set[str]) -> bool:
    """Whether ``path`` is one of ``roots`` or lies below one (by name; for recording roots, not for trust)."""
    current = path
    while current not in roots:
        parent = os.path.dirname(current)
        if parent == current:
            return False
        current = parent
    return True


def shown_path(path: str, roots: list[str]) -> str:
    """A photo's path as an answer to a web client shows it: from the widest root that holds it, that folder's own
    name first (``Photos/2019/a.jpg``), never the server's folders above it; the file name alone when no root
    holds it."""
    holding = [r for r in roots if covered(path, {r})]
    if not holding:
        return os.path.basename(path)
    root = min(holding, key=len)
    return os.path.join(os.path.basename(root.rstrip(os.sep)), os.path.relpath(path, root))


def roots_of(sources: list[str | Path], found: list[str]) -> tuple[set[str], set[str]]:
    """What an index records about where its photos came from: the folders given (``roots``; a photo directly in
    one has no person's folder), and every place a photo may be read back from (``photo_roots``): those folders
    and the folder of each photo given on its own or in a list of paths."""
    folders = {os.path.abspath(s) for s in sources if os.path.isdir(s)}
    places = set(folders)
    for path in found:
        if not covered(path, places):
            places.add(os.path.dirname(path))
    return folders, places


__all__ = ["Unavailable", "read_original", "signature", "resolved_roots", "roots_of", "covered", "shown_path",
           "MAX_BYTES"]
