"""Where an index's photos are: every path is kept relative to the archive root, so the archive can move.

``facetwin index`` stores each photo's path below the archive root: on a new index the folder given with
``--root DIR``, else the deepest folder holding every photo of the first run; a later run that adds photos from
outside it moves the root up to the deepest folder holding them all (the paths already recorded are not rewritten:
each shard notes the folder below the new root they start from). The manifest records the root as an absolute path
(``root``) and as the way to it from the index folder (``root_from_index``). A command finds the root
in this order: ``--root DIR`` when given (the archive is mounted there now), the recorded root when it is a folder,
the folder ``root_from_index`` leads to from where the index is now (an archive moved or mounted elsewhere with
its index), else the recorded root as it is (the photos are then unavailable; their paths are still shown). Every
worker of a Ray run reads the photos through the root the driver found.
"""

from __future__ import annotations

import os
from pathlib import Path

from facetwin.core.paths import printable
from facetwin.errors import FacetwinError


def relative(path: str, root: str) -> str | None:
    """``path`` (absolute) relative to ``root``, or None when it is not below it."""
    rel = os.path.relpath(os.path.abspath(path), root)
    if rel == "." or rel == ".." or rel.startswith("../") or os.path.isabs(rel):
        return None
    return rel


def below(paths: list[str], root: str) -> list[str | None]:
    """Each of ``paths`` relative to ``root`` (through the real folder it is in if need be), None where it is not
    below it."""
    out = []
    for path in paths:
        rel = relative(path, root)
        if rel is None:
            rel = relative(os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path)), root)
        out.append(rel)
    return out


def widened(root: str, outside: list[str]) -> str:
    """The deepest folder holding ``root`` and the photos ``outside`` it: the index's root once they are added."""
    return os.path.commonpath([root, *(os.path.dirname(os.path.abspath(p)) for p in outside)])


def first_root(sources, found: list[str]) -> str:
    """The root of a new index: the deepest folder holding every photo found and every folder given."""
    folders = [os.path.realpath(s) for s in sources if os.path.isdir(s)]
    places = folders + [os.path.dirname(p) for p in found]
    if not places:
        places = [os.path.dirname(os.path.abspath(s)) for s in sources] or [os.getcwd()]
    return os.path.commonpath(places)


def given(root: str | Path | None) -> str | None:
    """``--root DIR`` as an absolute real path; one sentence when it is not a folder."""
    if root is None:
        return None
    if not Path(root).is_dir():
        raise FacetwinError(f"{printable(root)}: no such folder (--root names the folder the archive is in now).")
    return os.path.realpath(root)


def resolve(index_dir: Path, manifest: dict, root: str | Path | None = None) -> str | None:
    """The archive root in effect: ``root`` (``--root``), the recorded one if it is a folder, the one beside the
    index, else the recorded one as it is (None for an index that has none yet)."""
    chosen = given(root)
    if chosen is not None:
        return chosen
    recorded = manifest.get("root")
    if recorded is None or os.path.isdir(recorded):
        return recorded
    beside = os.path.normpath(os.path.join(os.path.realpath(index_dir), manifest.get("root_from_index", ".")))
    return beside if os.path.isdir(beside) else recorded


def from_index(index_dir: Path, root: str) -> str:
    """How to reach ``root`` from the index folder (recorded, so that an archive moved with its index is found)."""
    return os.path.relpath(root, os.path.realpath(index_dir))


def absolute(root: str, rel: str) -> str:
    """The photo (or folder: ``.`` is the root) at ``rel`` below ``root``."""
    return os.path.normpath(os.path.join(root, rel))


__all__ = ["relative", "below", "widened", "first_root", "given", "resolve", "from_index", "absolute"]
