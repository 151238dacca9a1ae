"""Fuzzing for a bounded time: randomly corrupted photos fed to ``Model.verify`` and to the running service.

The rule: every input gives an answer or one :class:`FacetwinError` (the service: 200, 413, 415 or 422), never
another exception or a 500. The seed is printed on failure so a case can be replayed.
"""

from __future__ import annotations

import io
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from facetwin.errors import FacetwinError

from conftest import DATA, need, running

SECONDS = 20  # per target: ~40 s in all
SEED = 20261201
MAGIC = [b"%!PS-Ado", b"GIF89a\x00\x00", b"\x89PNG\r\n\x1a\n", b"II*\x00\x08\x00\x00\x00", b"BM\xff\xff\xff\x7f\x00"]


def _seeds() -> list[bytes]:
    """Real photos in several formats, and odd shapes and modes, as encoded bytes."""
    examples = need(DATA / "face_recognition_examples")
    photos = [examples / "obama" / "obama.jpg", examples / "biden" / "biden.jpg"]
    out = [p.read_bytes() for p in photos]
    img = Image.open(photos[0]).convert("RGB")
    img.thumbnail((200, 200))
    for fmt, mode in (("PNG", "RGB"), ("PNG", "P"), ("WEBP", "RGB"), ("GIF", "P"), ("BMP", "RGB"),
                      ("TIFF", "CMYK"), ("PPM", "RGB"), ("PNG", "I;16"), ("JPEG", "L"), ("PNG", "LA")):
        buffer = io.BytesIO()
        img.convert(mode).save(buffer, fmt)
        out.append(buffer.getvalue())
    for size in ((1, 1), (1, 3000), (3000, 1), (2, 2)):
        buffer = io.BytesIO()
        Image.new("RGB", size, (200, 150, 120)).save(buffer, "PNG")
        out.append(buffer.getvalue())
    return out


def _corrupt(data: bytes, rng: np.random.Generator) -> bytes:
    """One random damage: bit flips, byte runs, truncation, a repeated or swapped chunk, or a foreign header."""
    buf = bytearray(data)
    kind = rng.integers(0, 7)
    n = len(buf)
    if kind == 0:  # a few bit flips
        for i in rng.integers(0, n, size=int(rng.integers(1, 20))):
            buf[i] ^= 1 << int(rng.integers(0, 8))
    elif kind == 1:  # a run of random bytes
        start = int(rng.integers(0, n))
        buf[start : start + int(rng.integers(1, 64))] = rng.bytes(int(rng.integers(1, 64)))
    elif kind == 2:  # truncated
        buf = buf[: int(rng.integers(0, n))]
    elif kind == 3:  # a chunk repeated
        a = int(rng.integers(0, n))
        buf[a:a] = buf[a : a + int(rng.integers(1, 4096))] * int(rng.integers(1, 4))
    elif kind == 4:  # header bytes randomised (dimensions, chunk lengths)
        for i in range(min(n, 64)):
            if rng.random() < 0.2:
                buf[i] = int(rng.integers(0, 256))
    elif kind == 5:  # another format's magic in front
        buf[:8] = MAGIC[int(rng.integers(0, len(MAGIC)))]
    else:  # zeros in the middle
        start = int(rng.integers(0, n))
        buf[start : start + int(rng.integers(1, 2048))] = bytes(min(2048, n))[: int(rng.integers(1, 2048))]
    return bytes(buf)


def test_fuzz_model_verify(model):
    seeds, rng = _seeds(), np.random.default_rng(SEED)
    end, cases, answers = time.monotonic() + SECONDS, 0, 0
    while time.monotonic() < end:
        a = _corrupt(seeds[int(rng.integers(0, len(seeds)))], rng)
        b = seeds[int(rng.integers(0, len(seeds)))]
        try:
            result = model.verify(a, b, names=("a.bin", "b.bin"))
            assert np.isfinite(result.distance)
            answers += 1
        except FacetwinError as exc:
            assert "\n" not in str(exc)
        except Exception as exc:  # noqa: BLE001 - the point of the test
            pytest.fail(f"case {cases} (seed {SEED}): {type(exc).__name__}: {exc}")
        cases += 1
    assert cases > 50, cases
    print(f"{cases} corrupted pairs, {answers} answered, {cases - answers} refused in one sentence")


def test_fuzz_service(model, tmp_path):
    from facetwin.service import create_app

    seeds, rng = _seeds(), np.random.default_rng(SEED + 1)
    statuses: dict[int, int] = {}
    app = create_app(model, gallery=tmp_path / "g.db", api_key=None, read_timeout=5)
    with running(app) as base, httpx.Client(base_url=base, timeout=60) as client:
        end = time.monotonic() + SECONDS
        while time.monotonic() < end:
            damaged = _corrupt(seeds[int(rng.integers(0, len(seeds)))], rng)
            which = int(rng.integers(0, 3))
            if which == 0:
                r = client.post("/v1/embed", files={"image": ("x.jpg", damaged, "image/jpeg")})
            elif which == 1:
                r = client.post("/v1/identify", files={"image": ("x.jpg", damaged, "image/jpeg")})
            else:
                r = client.post("/v1/people/Fuzz/images", files=[("images", ("x.png", damaged, "image/png"))])
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            assert r.status_code in (200, 413, 415, 422), (r.status_code, r.text)
            assert isinstance(r.json(), dict)
        assert client.get("/healthz").status_code == 200
    assert sum(statuses.values()) > 30, statuses
    print("statuses:", statuses)
