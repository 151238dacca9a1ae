"""LFW ``pairs.txt`` files with any number of folds: ``FOLDS<TAB>PER_FOLD``, then per fold PER_FOLD
same-person lines ``name n1 n2`` and PER_FOLD different-person lines ``name1 n1 name2 n2``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from facetwin.core.text import count
from facetwin.errors import FacetwinError


@dataclass(frozen=True)
class Pair:
    """Two images (paths relative to the images folder), whether they show one person, and the fold."""

    a: str
    b: str
    same: bool
    fold: int


@dataclass(frozen=True)
class PairsFile:
    folds: int
    per_fold: int
    pairs: list[Pair]


def image_path(name: str, number: str) -> str:
    """LFW's file name of image ``number`` of ``name``: ``name/name_000N.jpg``."""
    return f"{name}/{name}_{int(number):04d}.jpg"


def _check_names(fields: list[str], path: Path, number: int) -> None:
    """Person names are one folder name inside --images: no separators, no '..', nothing absolute."""
    for name in fields[0::2] if len(fields) == 4 else fields[:1]:
        if "/" in name or "\\" in name or name in (".", "..") or "\0" in name or ":" in name[:2]:
            raise FacetwinError(
                f"{path}, line {number}: the name '{name[:60]}' is not a folder name inside --images "
                "(no '/', '\\' or '..')."
            )


def read_pairs(path: str | Path) -> PairsFile:
    """Parse a pairs file; a malformed line raises :class:`FacetwinError` naming the file and line."""
    path = Path(path)
    try:
        lines = [line.split() for line in path.read_text(encoding="utf-8").splitlines()]
    except OSError as exc:
        raise FacetwinError(f"{path}: cannot read the pairs file ({exc.strerror or exc}).") from None
    except UnicodeDecodeError:
        raise FacetwinError(f"{path}: not a text pairs file.") from None
    if not lines or not lines[0]:
        raise FacetwinError(f"{path}: empty pairs file; the first line must be 'FOLDS<TAB>PER_FOLD'.")
    header = lines[0]
    try:
        folds, per_fold = (int(header[0]), int(header[1])) if len(header) == 2 else (1, int(header[0]))
    except ValueError:
        raise FacetwinError(f"{path}, line 1: expected 'FOLDS<TAB>PER_FOLD', found '{' '.join(header)}'.") from None
    body = [(number, fields) for number, fields in enumerate(lines[1:], start=2) if fields]
    expected = folds * per_fold * 2
    if len(body) != expected:
        raise FacetwinError(
            f"{path}: the header announces {count(folds, 'fold')} of {per_fold} same + {per_fold} different pairs "
            f"({expected} lines), but the file has {len(body)} pair lines."
        )
    pairs = []
    for index, (number, fields) in enumerate(body):
        fold, position = divmod(index, 2 * per_fold)
        same = position < per_fold
        _check_names(fields, path, number)
        try:
            if same and len(fields) == 3:
                pairs.append(Pair(image_path(fields[0], fields[1]), image_path(fields[0], fields[2]), True, fold))
            elif not same and len(fields) == 4:
                pairs.append(Pair(image_path(fields[0], fields[1]), image_path(fields[2], fields[3]), False, fold))
            else:
                kind = "'name n1 n2'" if same else "'name1 n1 name2 n2'"
                raise FacetwinError(f"{path}, line {number}: expected a {kind} line, found '{' '.join(fields)}'.")
        except ValueError:
            raise FacetwinError(f"{path}, line {number}: image numbers must be integers.") from None
    return PairsFile(folds, per_fold, pairs)
