"""Downloading a file safely: progress bar, resume with HTTP Range, verification, atomic rename.

``fetch(url, dest)`` writes into ``dest + ".part"``; an interrupted transfer keeps the partial file and
the next attempt (an automatic retry, or a later call) asks the server for the rest (``Range: bytes=N-``).
When the transfer is complete the file is checked (optional SHA-256 and ``verify`` callback) and only then
renamed to ``dest``. A file that fails the check is deleted: nothing corrupt is left behind.
"""

from __future__ import annotations

import http.client
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from facetwin.core.paths import sha256_file
from facetwin.errors import FacetwinError

CHUNK = 1 << 16
USER_AGENT = "facetwin-download/1"


def _hint(url: str, dest: Path, hint: str | None) -> str:
    return hint or f"download {url} by hand (e.g. `curl -L -o {dest} {url}`)"


def _total_from_headers(response, offset: int) -> int | None:
    content_range = response.headers.get("Content-Range")
    if content_range:
        match = re.match(r"bytes\s+(?:\d+-\d+|\*)/(\d+)", content_range)
        if match:
            return int(match.group(1))
    length = response.headers.get("Content-Length")
    if length is not None and length.isdigit():
        return int(length) + offset
    return None


class _Interrupted(Exception):
    """The connection broke mid-transfer; the partial file is kept for a resume."""


def _transfer(url: str, part: Path, *, timeout: float, progress: bool, desc: str) -> None:
    """One HTTP request that appends to ``part`` (resuming when it already has bytes)."""
    from tqdm import tqdm

    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            # Range not satisfiable: the partial file already holds everything (or is longer than the file).
            total = _total_from_headers(exc, 0)
            if total is not None and total == offset:
                return
            part.unlink(missing_ok=True)
            raise _Interrupted(f"server refused to resume at byte {offset}") from None
        raise
    with response:
        status = getattr(response, "status", 200)
        if offset and status != 206:
            offset = 0  # the server ignored the Range header: start again from byte 0
        total = _total_from_headers(response, offset)
        mode = "ab" if offset else "wb"
        received = offset
        with open(part, mode) as handle, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
            disable=None if progress else True, leave=False,
        ) as bar:
            try:
                while True:
                    block = response.read(CHUNK)
                    if not block:
                        break
                    handle.write(block)
                    received += len(block)
                    bar.update(len(block))
            except (OSError, http.client.HTTPException) as exc:
                handle.flush()
                raise _Interrupted(f"connection lost after {received:,} bytes ({exc})") from None
            handle.flush()
            os.fsync(handle.fileno())
        if total is not None and received < total:
            raise _Interrupted(f"connection closed after {received:,} of {total:,} bytes")
        if total is not None and received > total:
            part.unlink(missing_ok=True)
            raise _Interrupted(f"server sent {received:,} bytes, more than the {total:,} announced")


def fetch(
    url: str,
    dest: str | Path,
    *,
    sha256: str | None = None,
    verify: Callable[[Path], None] | None = None,
    progress: bool = True,
    retries: int = 3,
    timeout: float = 60.0,
    hint: str | None = None,
) -> Path:
    """Download ``url`` to ``dest`` and return ``dest``.

    - progress bar (tqdm) unless ``progress=False``;
    - resumes from ``dest.part`` with an HTTP Range request, after an interruption within this call
      (up to ``retries`` more attempts) or from an earlier call;
    - ``sha256`` (hex) and ``verify(path)`` (raises :class:`FacetwinError` when the file is wrong) run
      on the complete ``.part`` file; a file that fails is deleted;
    - the finished file appears at ``dest`` by an atomic rename.

    Failures raise :class:`FacetwinError` with one sentence that says how to get the file by hand
    (``hint`` replaces the generic advice).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    advice = _hint(url, dest, hint)
    last = ""
    for attempt in range(retries + 1):
        try:
            _transfer(url, part, timeout=timeout, progress=progress, desc=dest.name)
            break
        except _Interrupted as exc:
            last = str(exc)
            if attempt < retries:
                time.sleep(min(0.2 * 2**attempt, 2.0))
                continue
            raise FacetwinError(
                f"download of {url} was interrupted ({last}); the partial file {part} is kept, run the same "
                f"command again to resume, or {advice}."
            ) from None
        except urllib.error.HTTPError as exc:
            raise FacetwinError(f"could not download {url}: the server answered HTTP {exc.code}; {advice}.") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise FacetwinError(f"could not download {url} (no network? {reason}); {advice}.") from None
    try:
        if sha256 is not None:
            found = sha256_file(part)
            if found.lower() != sha256.lower():
                raise FacetwinError(
                    f"download of {url} is corrupt: SHA-256 {found} differs from the expected {sha256}; "
                    "the file was deleted."
                )
        if verify is not None:
            verify(part)
    except FacetwinError as exc:
        part.unlink(missing_ok=True)
        message = str(exc)
        if "deleted" not in message:
            message = f"download of {url} was refused: {message.rstrip('.')}; the file was deleted."
        raise FacetwinError(message) from None
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return dest
