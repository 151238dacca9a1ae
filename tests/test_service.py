"""The HTTP service against a real uvicorn server on 127.0.0.1, with real photos."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from conftest import DATA, free_port, need, running

EXAMPLES = DATA / "face_recognition_examples"
LFW = DATA / "lfw-dev" / "images"
CLI = "import sys; from facetwin.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.fixture(scope="module")
def url(model):
    from facetwin.service import create_app

    with running(create_app(model, max_upload_bytes=2 * 2**20, api_key=None)) as base:
        yield base


@pytest.fixture
def client(url):
    with httpx.Client(base_url=url, timeout=60) as c:
        yield c


def photo(rel: str) -> tuple[str, bytes, str]:
    path = need(EXAMPLES / rel)
    return path.name, path.read_bytes(), "image/jpeg"


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


# ---------------------------------------------------------------------------- verify


def test_verify_same_person(client):
    r = client.post("/v1/verify", files={"a": photo("obama/obama.jpg"), "b": photo("obama/obama2.jpg")})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["same"] is True
    assert 0 <= doc["distance"] <= doc["threshold"]
    assert doc["probability"] > 0.5
    assert [f["file"] for f in doc["faces"]] == ["obama.jpg", "obama2.jpg"]
    for face in doc["faces"]:
        x, y, w, h = face["box"]
        assert face["note"] == "detected" and face["score"] > 0.5
        assert 0 <= x < x + w <= face["width"] + 1 and 0 <= y < y + h <= face["height"] + 1
    assert doc["faces"][0]["width"] == Image.open(EXAMPLES / "obama/obama.jpg").width


def test_verify_different_people(client):
    r = client.post("/v1/verify", files={"a": photo("obama/obama.jpg"), "b": photo("biden/biden.jpg")})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["same"] is False
    assert doc["distance"] > doc["threshold"]
    assert doc["probability"] < 0.5


def test_verify_matches_the_library(client, model):
    a, b = EXAMPLES / "kit_harington/john1.jpeg", EXAMPLES / "rose_leslie/img1.jpg"
    doc = client.post("/v1/verify", files={"a": photo("kit_harington/john1.jpeg"), "b": photo("rose_leslie/img1.jpg")})
    expected = model.verify(a, b)
    assert doc.json()["same"] == expected.same
    assert doc.json()["distance"] == pytest.approx(expected.distance, abs=1e-5)


def test_verify_lfw_pairs(client):
    """Three same-person and three different-person LFW pairs, decided as the CLI decides them."""
    need(LFW)
    same = [("Colin_Powell", 1, 2), ("Tony_Blair", 1, 3), ("Hugo_Chavez", 1, 4)]
    diff = [("Colin_Powell", 1, "Tony_Blair", 1), ("Hugo_Chavez", 2, "Laura_Bush", 2)]

    def file(name, n):
        path = need(LFW / name / f"{name}_{n:04d}.jpg")
        return path.name, path.read_bytes(), "image/jpeg"

    for name, i, j in same:
        assert client.post("/v1/verify", files={"a": file(name, i), "b": file(name, j)}).json()["same"] is True
    for n1, i, n2, j in diff:
        assert client.post("/v1/verify", files={"a": file(n1, i), "b": file(n2, j)}).json()["same"] is False


# ---------------------------------------------------------------------------- errors


def test_not_an_image_is_415(client):
    text = ("notes.txt", b"hello, not a photo", "text/plain")
    r = client.post("/v1/verify", files={"a": text, "b": photo("biden/biden.jpg")})
    assert r.status_code == 415
    assert r.json() == {
        "error": "notes.txt: not an image file of an accepted format (JPEG, PNG, WebP, GIF, BMP, TIFF or PPM/PGM)."
    }


def test_truncated_jpeg_is_415(client):
    data = (EXAMPLES / "biden/biden.jpg").read_bytes()[:300]
    r = client.post("/v1/verify", files={"a": ("cut.jpg", data, "image/jpeg"), "b": photo("biden/biden.jpg")})
    assert r.status_code == 415
    assert r.json()["error"].startswith("cut.jpg: ")


def test_no_face_is_422(client, tmp_path):
    rng = np.random.default_rng(0)
    blank = tmp_path / "wall.png"
    Image.fromarray((rng.random((240, 320, 3)) * 40 + 100).astype(np.uint8)).save(blank)
    wall = ("wall.png", blank.read_bytes(), "image/png")
    r = client.post("/v1/verify", files={"a": photo("obama/obama.jpg"), "b": wall})
    assert r.status_code == 422
    message = r.json()["error"]
    assert message.startswith("wall.png: no face found") and "--no-face" not in message
    assert client.post("/v1/embed", files={"image": ("wall.png", blank.read_bytes())}).status_code == 422


def test_over_limit_by_content_length_is_413(client):
    big = b"\xff" * (3 * 2**20)
    r = client.post("/v1/verify", files={"a": ("big.jpg", big, "image/jpeg"), "b": photo("biden/biden.jpg")})
    assert r.status_code == 413
    assert r.json() == {"error": "the upload is larger than the 2 MB this server accepts."}


def test_over_limit_counted_while_reading_is_413(client):
    """No Content-Length (chunked): the server counts the bytes and stops at the limit."""
    head = (
        b'--BOUNDARY\r\nContent-Disposition: form-data; name="a"; filename="a.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n"
    )

    def body():
        yield head
        for _ in range(60):  # 6 MB in 100 kB chunks
            yield b"\xff" * 100_000

    r = client.post("/v1/verify", content=body(), headers={"Content-Type": "multipart/form-data; boundary=BOUNDARY"})
    assert r.status_code == 413
    assert "larger than the 2 MB" in r.json()["error"]


def test_under_limit_large_photo_is_fine(client):
    """A photo close to (but under) the limit goes through the counted path."""
    arr = np.asarray(Image.open(EXAMPLES / "obama/obama.jpg").convert("RGB"))
    data = png_bytes(arr)  # lossless PNG of a ~1 MP photo: about 1.5 MB
    assert 2**20 < len(data) < 2 * 2**20 - 10_000
    r = client.post("/v1/embed", files={"image": ("obama.png", data, "image/png")})
    assert r.status_code == 200, r.text
    assert r.json()["dim"] == 128


def test_missing_field_is_400(client):
    r = client.post("/v1/verify", files={"a": photo("obama/obama.jpg")})
    assert r.status_code == 400
    assert r.json() == {"error": "missing form field 'b'."}


def test_unknown_route_is_json_404(client):
    r = client.get("/v1/nothing")
    assert r.status_code == 404 and r.json()["error"].startswith("no such endpoint")


def test_people_without_gallery_is_503(client):
    r = client.get("/v1/people")
    assert r.status_code == 503 and "no gallery" in r.json()["error"] and "--" not in r.json()["error"]


# ---------------------------------------------------------------------------- embed, page, docs


def test_embed(client, model):
    r = client.post("/v1/embed", files={"image": photo("biden/biden2.jpg")})
    assert r.status_code == 200
    doc = r.json()
    vector = np.asarray(doc["embedding"], dtype=np.float32)
    expected = model.embed(EXAMPLES / "biden/biden2.jpg")[0]
    assert doc["dim"] == vector.shape[0] == expected.shape[0]
    assert np.allclose(vector, expected, atol=1e-5)
    assert doc["face"]["box"] is not None and doc["fingerprint"] == model.fingerprint


def test_page_docs_health(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="verdict"' in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/style.css").status_code == 200
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/v1/verify", "/v1/embed", "/v1/identify", "/v1/people", "/v1/people/{person}/images", "/healthz"):
        assert path in paths
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["model"] == "sface" and health["gallery"] is False


def test_concurrent_requests(url):
    """Eight clients at once: every answer is right (the model is shared safely)."""
    results = []

    def one(i):
        with httpx.Client(base_url=url, timeout=120) as c:
            b = photo("obama/obama3.jpg") if i % 2 else photo("biden/biden.jpg")
            results.append((i, c.post("/v1/verify", files={"a": photo("obama/obama1.jpg"), "b": b}).json()))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8
    for i, doc in results:
        assert doc["same"] is bool(i % 2)


# ---------------------------------------------------------------------------- API key


def test_api_key(model):
    from facetwin.service import create_app

    with running(create_app(model, api_key="s3cret")) as base, httpx.Client(base_url=base, timeout=60) as c:
        files = {"a": photo("obama/obama.jpg"), "b": photo("obama/obama1.jpg")}
        r = c.post("/v1/verify", files=files)
        assert r.status_code == 401 and r.json()["error"].startswith("this server needs an API key")
        assert c.get("/healthz").json() == {"status": "ok", "api_key_required": True}  # public, says no more
        assert c.get("/v1/people").status_code == 401
        assert c.get("/openapi.json").status_code == 401
        r = c.post("/v1/verify", files=files, headers={"X-API-Key": "wrong"})
        assert r.status_code == 401 and "wrong API key" in r.json()["error"]
        assert c.post("/v1/verify", files=files, headers={"X-API-Key": "s3cret"}).json()["same"] is True
        assert c.post("/v1/verify", files=files, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/healthz", headers={"Authorization": "Bearer s3cret"}).json()["api_key_required"] is True
        assert c.get("/").status_code == 200  # the page itself is public; it asks for the key
        assert c.get("/static/app.js").status_code == 200


def test_api_key_from_environment(model, monkeypatch):
    """``create_app``'s default key is read from FACETWIN_API_KEY (the CLI passes it explicitly too)."""
    import importlib

    import facetwin.service.app as service_app

    monkeypatch.setenv("FACETWIN_API_KEY", "from-env")
    reloaded = importlib.reload(service_app)
    try:
        with running(reloaded.create_app(model)) as base:
            assert httpx.get(base + "/v1/people").status_code == 401
            assert "model" in httpx.get(base + "/healthz", headers={"X-API-Key": "from-env"}).json()
    finally:
        monkeypatch.delenv("FACETWIN_API_KEY")
        importlib.reload(service_app)


# ---------------------------------------------------------------------------- gallery (people endpoints)


def test_people_enroll_identify_list_delete(model, tmp_path):
    pytest.importorskip("facetwin.gallery", reason="facetwin.gallery (issue 6) has not landed")
    from facetwin.service import create_app

    gallery_file = tmp_path / "people.gallery"
    with running(create_app(model, gallery=gallery_file, api_key=None)) as base, httpx.Client(
        base_url=base, timeout=120
    ) as c:
        assert c.get("/v1/people").json() == {"people": []}
        two = [("images", photo("obama/obama.jpg")), ("images", photo("obama/obama1.jpg"))]
        r = c.post("/v1/people/obama/images", files=two)
        assert r.status_code == 200, r.text
        assert r.json()["enrolled"] == 2
        r = c.post("/v1/people/biden/images", files=[("images", photo("biden/biden.jpg"))])
        assert r.status_code == 200 and r.json()["enrolled"] == 1
        listing = {p["name"]: p["embeddings"] for p in c.get("/v1/people").json()["people"]}
        assert listing == {"biden": 1, "obama": 2}

        r = c.post("/v1/identify", files={"image": photo("obama/obama3.jpg")}, data={"top_k": "2"})
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["person"] == "obama" and doc["file"] == "obama3.jpg"
        assert [m["person"] for m in doc["matches"]] == ["obama", "biden"]
        assert doc["matches"][0]["distance"] <= doc["threshold"] < doc["matches"][1]["distance"]
        assert doc["face"]["box"] is not None and doc["face"]["width"] == doc["width"]
        r = c.post("/v1/identify", files={"image": photo("biden/biden2.jpg")})
        assert r.json()["person"] == "biden"
        r = c.post("/v1/identify", files={"image": photo("rose_leslie/img1.jpg")})  # not enrolled: open set
        assert r.status_code == 200 and r.json()["person"] == "unknown"

        wall = ("wall.png", png_bytes(np.full((120, 160, 3), 128, np.uint8)), "image/png")
        r = c.post("/v1/people/nobody/images", files=[("images", photo("biden/biden2.jpg")), ("images", wall)])
        assert r.status_code == 422 and r.json()["error"].startswith("wall.png: no face found")
        assert "nobody" not in {p["name"] for p in c.get("/v1/people").json()["people"]}  # all or nothing

        r = c.post("/v1/people/nobody/images", files=[("images", ("x.txt", b"text", "text/plain"))])
        assert r.status_code == 415

        r = c.delete("/v1/people/obama")
        assert r.status_code == 200 and r.json()["removed"] == 2
        assert [p["name"] for p in c.get("/v1/people").json()["people"]] == ["biden"]
        assert c.get("/v1/gallery").json()["people"] == 1
        assert c.delete("/v1/people/obama").status_code == 404
        assert gallery_file.exists()


# ---------------------------------------------------------------------------- CLI


def test_cli_serve(tmp_path):
    need(EXAMPLES)
    port = free_port()
    env = dict(os.environ, FACETWIN_API_KEY="", FACETWIN_HOME=str(tmp_path / "home"))
    proc = subprocess.Popen(
        [sys.executable, "-c", CLI, "serve", "--port", str(port), "--max-upload-mb", "1",
         "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"facetwin serve did not start: {proc.stdout.read()}")
                time.sleep(0.2)
        assert health.json()["max_upload_bytes"] == 2**20
        r = httpx.post(f"http://127.0.0.1:{port}/v1/embed", files={"image": ("x.bin", b"\0" * (2**20 + 10))})
        assert r.status_code == 413
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_cli_serve_bad_port():
    r = subprocess.run([sys.executable, "-c", CLI, "serve", "--port", "0"], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip() == "facetwin: error: --port must be between 1 and 65535, got 0."
