"""Weights the user brings: research-licensed trunks fetched or imported once into ``$FACETWIN_HOME/weights/NAME``.

- ``fetch(entry)`` downloads the upstream file (or the zip holding it) with :func:`facetwin.core.download.fetch`:
  progress bar, resume, atomic rename; a zip is opened, only the member is kept, the archive is deleted.
- ``install(entry, file)`` (``facetwin weights import``) accepts a file whose SHA-256 is known, or one the
  family's own reader recognises (e.g. a re-quantised copy), copies it atomically and records its SHA-256 and
  form in ``weights.json`` beside it.
- Both need the licence accepted once (``accept=True``, the CLI's ``--accept-license``), remembered in
  ``$FACETWIN_HOME/licences.json``; without it one sentence says what the licence allows and how to accept it.
- ``installed_weights(entry)`` is what a backbone loads: the file, checked against its recorded SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from facetwin.backbones.entry import Entry, resolve
from facetwin.core import paths
from facetwin.core.assets import sha256_of
from facetwin.errors import FacetwinError

MAX_MEMBER_BYTES = 512 << 20  # a weights file inside an archive larger than this is refused (zip bombs)
RECORD = "weights.json"


@dataclass(frozen=True)
class Installed:
    """A weights file in the store: where, its SHA-256 and its form (``float``, ``int8``, ``quantised``...)."""

    path: Path
    sha256: str
    form: str


def store_dir(name: str) -> Path:
    return paths.home() / "weights" / name


def _licences_file() -> Path:
    return paths.home() / "licences.json"


def _accepted() -> dict:
    try:
        doc = json.loads(_licences_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def licence_accepted(entry: Entry) -> bool:
    """Whether the licence of ``entry``'s weights was accepted before (with this very wording)."""
    record = _accepted().get(entry.name)
    return isinstance(record, dict) and record.get("licence") == entry.weights.licence


def require_licence(entry: Entry, accept: bool, action: str) -> None:
    """Record the acceptance (``accept``), or stop with one sentence when the licence was never accepted."""
    weights = entry.weights
    if accept:
        doc = _accepted()
        doc[entry.name] = {"licence": weights.licence, "url": weights.licence_url, "accepted": time.time()}
        paths.atomic_write_text(_licences_file(), json.dumps(doc, indent=2) + "\n")
        return
    if not licence_accepted(entry):
        raise FacetwinError(
            f"the {entry.name} weights are {weights.licence} ({weights.licence_url}); to accept this and {action}, "
            f"run the same command with --accept-license (asked once, remembered in {_licences_file()})."
        )


def identify(entry: Entry, path: Path) -> Installed:
    """The form of a candidate weights file: known by SHA-256, else as the family's reader recognises it."""
    digest = sha256_of(path)
    form = entry.weights.known.get(digest)
    if form is None:
        form = resolve(entry.weights.recognise)(path)  # raises FacetwinError naming the file and the problem
    return Installed(path, digest, form)


def install(entry: Entry, file: str | Path, source: str | None = None) -> Installed:
    """Check ``file`` and copy it into the store as ``entry``'s weights (atomically; the old copy stays until then)."""
    file = Path(file)
    if not file.is_file():
        raise FacetwinError(f"{file}: no such file.")
    found = identify(entry, file)
    data = file.read_bytes()
    if hashlib.sha256(data).hexdigest() != found.sha256:
        raise FacetwinError(f"{file}: the file changed while being imported; nothing was installed.")
    target = store_dir(entry.name) / entry.weights.filename
    paths.atomic_write_bytes(target, data)
    record = {"sha256": found.sha256, "form": found.form, "file": target.name, "source": source or str(file.resolve()),
              "installed": time.time()}
    paths.atomic_write_text(target.parent / RECORD, json.dumps(record, indent=2) + "\n")
    return Installed(target, found.sha256, found.form)


def _extract(archive: Path, member: str, into: Path) -> Path:
    """The file named ``member`` (at any depth) of the zip ``archive``, written to ``into``; one sentence if the
    archive is damaged, lacks it, or declares it larger than any weights file."""
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = [i for i in zf.infolist() if Path(i.filename).name == member and not i.is_dir()]
            if not infos:
                raise FacetwinError(f"{archive}: the archive holds no {member}.")
            if infos[0].file_size > MAX_MEMBER_BYTES:
                raise FacetwinError(f"{archive}: {member} declares {infos[0].file_size:,} bytes, too large.")
            with zf.open(infos[0]) as handle:
                data = handle.read(MAX_MEMBER_BYTES + 1)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise FacetwinError(f"{archive}: not a readable zip archive ({exc}).") from None
    if len(data) > MAX_MEMBER_BYTES:
        raise FacetwinError(f"{archive}: {member} is larger than any weights file.")
    paths.atomic_write_bytes(into, data)
    return into


def fetch(entry: Entry, url: str | None = None, *, progress: bool = True) -> Installed:
    """Download ``entry``'s weights (resumable) and install them; the download itself is deleted afterwards."""
    from facetwin.core.download import fetch as download

    weights = entry.weights
    url = url or weights.url
    folder = store_dir(entry.name) / "download"
    name = Path(url.split("?")[0]).name or "download"
    hint = f"download {url} by hand and run `facetwin weights import {entry.name} FILE --accept-license`"
    downloaded = download(url, folder / name, progress=progress, hint=hint)
    try:
        candidate = _extract(downloaded, weights.member, folder / weights.member) if weights.member else downloaded
        try:
            return install(entry, candidate, source=url)
        except FacetwinError as exc:
            reason = str(exc).rstrip(".")
            raise FacetwinError(f"download of {url} was refused: {reason}; the file was deleted.") from None
        finally:
            candidate.unlink(missing_ok=True)
    finally:
        downloaded.unlink(missing_ok=True)


def recorded(entry: Entry) -> Installed | None:
    """The installed weights as ``weights.json`` records them (not checked), or None."""
    folder = store_dir(entry.name)
    try:
        record = json.loads((folder / RECORD).read_text(encoding="utf-8"))
        return Installed(folder / str(record["file"]), str(record["sha256"]), str(record["form"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def installed_weights(entry: Entry) -> Installed:
    """The weights a backbone loads, checked against their recorded SHA-256; one sentence saying how to get them
    when they are absent or damaged."""
    found = recorded(entry)
    how = (f"run `facetwin weights fetch {entry.name} --accept-license` (downloads {entry.weights.url}) or "
           f"`facetwin weights import {entry.name} FILE --accept-license`")
    if found is None or not found.path.is_file():
        raise FacetwinError(f"backbone {entry.name} needs its weights, which are not installed: {how}.")
    if sha256_of(found.path) != found.sha256:
        raise FacetwinError(f"{found.path}: the {entry.name} weights changed since they were installed; {how}.")
    return found


__all__ = ["Installed", "fetch", "identify", "install", "installed_weights", "licence_accepted", "recorded",
           "require_licence", "store_dir"]
