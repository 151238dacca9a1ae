"""Which photos to index: folders walked recursively and text files listing paths, with their size and time."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from facetwin.errors import FacetwinError

LIST_SUFFIXES = (".txt", ".lst", ".list")  # a PHOTOS argument with one of these suffixes lists paths, one a line


@dataclass(frozen=True)
class Candidate:
    """A file found by the scan: absolute path, size in bytes and modification time (ns)."""

    path: str
    size: int
    mtime_ns: int


def _walk(folder: Path, skip: Path | None) -> list[Path]:
    found: list[Path] = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        here = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (skip is None or here / d != skip))
        found += [here / f for f in sorted(files) if not f.startswith(".")]
    return found


def _listed(list_file: Path) -> list[Path]:
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise FacetwinError(f"{list_file}: cannot read this list of photos ({exc}).") from None
    base = list_file.parent
    return [Path(s) if Path(s).is_absolute() else base / s for s in (ln.strip() for ln in lines) if s and s[0] != "#"]


def scan(sources, *, skip: str | Path | None = None) -> list[Candidate]:
    """Every file under the folders, in the lists and given directly, once each, sorted by path.

    Hidden files and folders are left out, and so is ``skip`` (the index folder when it lies inside a photo
    folder). Listed paths that do not exist are kept: the run reports them as unreadable.
    """
    if isinstance(sources, str | Path):
        sources = [sources]
    skip_path = Path(skip).resolve() if skip is not None else None
    paths: list[Path] = []
    for source in sources:
        source = Path(source)
        if source.is_dir():
            paths += _walk(source.resolve(), skip_path)
        elif source.is_file() and source.suffix.lower() in LIST_SUFFIXES:
            paths += _listed(source)
        elif source.is_file():
            paths.append(source)
        else:
            raise FacetwinError(f"{source}: no such folder, list or photo.")
    out: dict[str, Candidate] = {}
    for path in paths:
        key = str(Path(os.path.abspath(path)))
        if key in out:
            continue
        try:
            st = os.stat(key)
            out[key] = Candidate(key, int(st.st_size), int(st.st_mtime_ns))
        except OSError:
            out[key] = Candidate(key, -1, -1)
    return [out[k] for k in sorted(out)]


__all__ = ["Candidate", "scan", "LIST_SUFFIXES"]
