"""What one request may cost the server: pixels per image and per request, photos per enrolment, and how many
pixels are decoded at once across all requests (which bounds the server's memory).

Sizes are read from the image headers before anything is decoded, so a small upload that would decode to
gigabytes (a "decompression bomb") is refused with 413 at the cost of reading its header. Decoded photos live
only inside a :class:`PixelBudget` reservation: each is reduced to its face crop before the next is decoded.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from dataclasses import dataclass
from pathlib import Path

from fastapi import UploadFile
from starlette.concurrency import run_in_threadpool

from facetwin.errors import FacetwinError
from facetwin.service.http_errors import ServiceError
from facetwin.vision.io import image_size

MEGA = 1_000_000


@dataclass(frozen=True)
class Limits:
    """The service's caps (defaults in brackets): pixels of one photo [25 MP], of one request [50 MP], photos
    in one enrol request [16], pixels held decoded at once by the whole server [50 MP], decodes running at
    once [2, the cores of this machine]."""

    image_pixels: int = 25 * MEGA
    request_pixels: int = 50 * MEGA
    images_per_enroll: int = 16
    decoding_pixels: int = 50 * MEGA
    decodes: int = 2

    def __post_init__(self) -> None:
        if min(self.image_pixels, self.request_pixels, self.images_per_enroll, self.decoding_pixels, self.decodes) < 1:
            raise FacetwinError("service limits must be positive.")
        if self.request_pixels > self.decoding_pixels:
            raise FacetwinError("the pixels of one request cannot exceed the pixels decoded at once.")


@dataclass
class Upload:
    """An upload read into memory and checked from its header: bytes, label, SHA-256 and pixel count."""

    data: bytes
    label: str
    sha256: str
    pixels: int


class PixelBudget:
    """At most ``total`` decoded pixels at any time, server-wide; reservations wait their turn."""

    def __init__(self, total: int) -> None:
        self.total = int(total)
        self.used = 0
        self._changed: asyncio.Condition | None = None

    @contextlib.asynccontextmanager
    async def reserve(self, pixels: int):
        if self._changed is None:
            self._changed = asyncio.Condition()
        pixels = min(int(pixels), self.total)
        async with self._changed:
            await self._changed.wait_for(lambda: self.used + pixels <= self.total)
            self.used += pixels
        try:
            yield
        finally:
            async with self._changed:
                self.used -= pixels
                self._changed.notify_all()


def _label(upload: UploadFile, field: str) -> str:
    return Path(upload.filename or "").name[:200] or f"the uploaded '{field}' file"


async def read_uploads(uploads: list[UploadFile], field: str, limits: Limits) -> list[Upload]:
    """Read and check uploads from their headers: 415 not an accepted image, 413 over a pixel cap."""
    out: list[Upload] = []
    for upload in uploads:
        label = _label(upload, field)
        data = await upload.read()
        await upload.close()
        if not data:
            raise ServiceError(415, f"{label}: the upload is empty, not an image.")
        try:
            width, height = await run_in_threadpool(image_size, data, label)
        except FacetwinError as exc:
            status = 413 if "too large" in str(exc) else 415
            raise ServiceError(status, str(exc)) from None
        pixels = width * height
        if pixels > limits.image_pixels:
            raise ServiceError(
                413, f"{label}: image is {width}×{height} pixels, more than the {limits.image_pixels:,} allowed."
            )
        out.append(Upload(data, label, hashlib.sha256(data).hexdigest(), pixels))
    total = sum(u.pixels for u in out)
    if total > limits.request_pixels:
        raise ServiceError(
            413, f"the photos of this request have {total:,} pixels in all, more than the "
            f"{limits.request_pixels:,} allowed per request."
        )
    return out
