"""Where facetwin keeps its files (``$FACETWIN_HOME``), atomic writes, file digests, and who may read them.

The permission policy, in one place:

- **Stores of faces are owner-only.** Galleries (with their ``-wal``/``-shm`` files), index shards and manifests,
  ANN files (``faces.hnsw``, ``people.db.hnsw`` and their stamps) and cluster tables are written with
  ``private=True``: files 0600, the folders facetwin keeps them in 0700 (:func:`private_folder`); an existing
  store written by an earlier release is tightened the next time facetwin opens it for writing.
- **Results a user shares honour the umask.** Plots, evaluation JSON, run directories, exported models and every
  other output a command is asked to write use the default ``private=False``: files ``0666 & ~umask``, as any
  other program's output.
- ``$FACETWIN_HOME`` itself is created 0700, so its caches (trunk features, default galleries) stay the owner's.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from facetwin.errors import FacetwinError

PRIVATE_FILE = 0o600
PRIVATE_FOLDER = 0o700


def home() -> Path:
    """The facetwin cache folder: ``$FACETWIN_HOME`` or ``~/.cache/facetwin`` (created owner-only)."""
    root = os.environ.get("FACETWIN_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "facetwin")
    path = Path(root)
    if not path.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=PRIVATE_FOLDER, exist_ok=True)
    return path


def umask() -> int:
    """This process's umask, read without changing it (``os.umask`` would, for every thread, for a moment)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)  # not Linux: the classic read (briefly strict, never briefly open)
    os.umask(mask)
    return mask


def tighten(path: str | Path, mode: int) -> None:
    """Give ``path`` (a file or folder of a store) no more than ``mode`` (owner-only), if it exists and is ours;
    a file owned by someone else is left as it is."""
    try:
        st = os.stat(path)
        if stat.S_IMODE(st.st_mode) & ~mode and st.st_uid == os.getuid():
            os.chmod(path, stat.S_IMODE(st.st_mode) & mode)
    except OSError:
        pass


def private_folder(path: str | Path) -> Path:
    """The folder of a store of faces: created (with its missing parents) and made 0700."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_FOLDER)
    except OSError as exc:
        raise FacetwinError(f"{path}: cannot create the folder ({exc.strerror or exc}).") from None
    tighten(path, PRIVATE_FOLDER)
    return path


def private_file(path: str | Path) -> Path:
    """A store's file made 0600: created empty when missing (so no other mode is ever on disk), else
    tightened."""
    path = Path(path)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    except FileExistsError:
        tighten(path, PRIVATE_FILE)
    except OSError as exc:
        raise FacetwinError(f"{path}: cannot create the file ({exc.strerror or exc}).") from None
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


def atomic_write(path: str | Path, write: Callable[[Path], None], *, private: bool = False) -> None:
    """Make ``path`` by ``write(temporary path)`` and a rename, so a crash leaves no half file: the old file or
    the new one. ``private``: a store of faces (0600, see the module docstring), else the umask decides. A path
    that cannot be written raises one sentence naming it."""
    path = Path(path)
    if path.is_dir():
        raise FacetwinError(f"{path}: is a folder, not a file name to write.")
    try:
        if not path.parent.is_dir():
            path.parent.mkdir(parents=True, exist_ok=True, mode=PRIVATE_FOLDER if private else 0o777)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path), suffix=".tmp")  # 0600
        os.close(fd)
    except OSError as exc:
        raise FacetwinError(f"{path}: cannot write the file ({exc.strerror or exc}).") from None
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        if not private:
            os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise FacetwinError(f"{path}: cannot write the file ({exc.strerror or exc}).") from None
        raise


def atomic_write_bytes(path: str | Path, data: bytes, *, private: bool = False) -> None:
    """:func:`atomic_write` of ``data``."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data), private=private)


def atomic_write_text(path: str | Path, text: str, *, private: bool = False) -> None:
    """Text twin of :func:`atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"), private=private)


def printable(text: object) -> str:
    """``text`` (a path, a name read from a file) safe to print on a terminal: control, format and bidi
    characters shown as ``\\xNN``/``\\uNNNN`` escapes instead of acting on the terminal."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() or c == " " else (f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}")
        for c in text
    )


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    """SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
