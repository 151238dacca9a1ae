"""Which photos to index: folders walked recursively and text files listing paths, with their size and time.

A file is a photo when its name ends like one of the accepted formats (``.jpg``, ``.png``, ...) or when its first
bytes are such a format's signature (a JPEG saved without an ending); everything else found (videos, ``.xmp``
sidecars, ``.txt``/``.tsv`` notes, HEIC and RAW files, which facetwin cannot decode) is skipped and counted by
ending, never reported as an unreadable photo.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from facetwin.errors import FacetwinError
from facetwin.vision.io import PHOTO_SUFFIXES, SIGNATURE_BYTES, image_signature

LIST_SUFFIXES = (".txt", ".lst", ".list")  # a PHOTOS argument with one of these suffixes lists paths, one a line
NO_SUFFIX = "(no ending)"  # how a skipped file without a name ending is counted


@dataclass(frozen=True)
class Candidate:
    """A file found by the scan: absolute path, size in bytes and modification time (ns)."""

    path: str
    size: int
    mtime_ns: int


@dataclass
class Survey:
    """What a scan found: the photos, and the other files left out, counted by name ending (``.mov``: 3)."""

    photos: list[Candidate]
    skipped: Counter = field(default_factory=Counter)


def is_photo(path: Path) -> bool:
    """A photo by its name ending, or else by its signature (a file whose start cannot be read is not one)."""
    if path.suffix.lower() in PHOTO_SUFFIXES:
        return True
    try:
        with open(path, "rb") as handle:
            return image_signature(handle.read(SIGNATURE_BYTES)) is not None
    except OSError:
        return False


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


def survey(sources, *, skip: str | Path | None = None) -> Survey:
    """Every photo under the folders, in the lists and given directly, once each, sorted by path, and the count
    of the other files, which are skipped.

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
    skipped: Counter = Counter()
    seen: set[str] = set()
    for path in paths:
        key = str(Path(os.path.abspath(path)))
        if key in seen:
            continue
        seen.add(key)
        try:
            st = os.stat(key)
        except OSError:
            out[key] = Candidate(key, -1, -1)  # listed but missing (or unreachable): reported by the run
            continue
        if is_photo(Path(key)):
            out[key] = Candidate(key, int(st.st_size), int(st.st_mtime_ns))
        else:
            skipped[Path(key).suffix.lower() or NO_SUFFIX] += 1
    return Survey([out[k] for k in sorted(out)], skipped)


def scan(sources, *, skip: str | Path | None = None) -> list[Candidate]:
    """The photos of :func:`survey`."""
    return survey(sources, skip=skip).photos


__all__ = ["Candidate", "Survey", "scan", "survey", "is_photo", "LIST_SUFFIXES"]
