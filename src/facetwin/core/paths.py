"""Where facetwin keeps its files (``$FACETWIN_HOME``), atomic writes, and file digests."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from facetwin.errors import FacetwinError


def home() -> Path:
    """The facetwin cache folder: ``$FACETWIN_HOME`` or ``~/.cache/facetwin``."""
    root = os.environ.get("FACETWIN_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "facetwin")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def temp_prefix(path: Path) -> str:
    """Prefix of this process's temporary files for ``path``: ``.NAME.PID.`` (see :func:`remove_stale_temps`)."""
    return f".{path.name}.{os.getpid()}."


def remove_stale_temps(path: str | Path) -> int:
    """Delete temporary files for ``path`` left by processes that died mid-write (killed, power cut); returns
    how many. A temp file of a process still running is kept."""
    path = Path(path)
    removed = 0
    try:
        names = os.listdir(path.parent)
    except OSError:
        return 0
    head = f".{path.name}."
    for name in names:
        pid = name[len(head):].split(".", 1)[0]
        if not (name.startswith(head) and name.endswith(".tmp") and pid.isdigit()):
            continue
        try:
            os.kill(int(pid), 0)
            continue  # alive (or not ours to signal): its writer may still be at work
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        (path.parent / name).unlink(missing_ok=True)
        removed += 1
    return removed


def output_file(path: str | Path | None, option: str, suffix: str | None = None) -> Path | None:
    """Check an output file option before any work: not a folder, its folder not a file, the right suffix."""
    if path is None:
        return None
    path = Path(path)
    if path.is_dir():
        ending = f" ending in {suffix}" if suffix else ""
        raise FacetwinError(f"{path}: is a folder; {option} needs a file name{ending}.")
    if suffix and path.suffix.lower() != suffix:
        raise FacetwinError(f"{path}: {option} must name a {suffix} file.")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise FacetwinError(f"{path}: cannot write it, {parent} is a file, not a folder.")
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename, so a crash leaves no half file.
    A path that cannot be written raises one sentence naming it."""
    path = Path(path)
    if path.is_dir():
        raise FacetwinError(f"{path}: is a folder, not a file name to write.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path), suffix=".tmp")
    except OSError as exc:
        raise FacetwinError(f"{path}: cannot write the file ({exc.strerror or exc}).") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise FacetwinError(f"{path}: cannot write the file ({exc.strerror or exc}).") from None
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Text twin of :func:`atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    """SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
