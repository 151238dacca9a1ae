"""The service as an attacker (or a careless client) meets it: a real uvicorn server on 127.0.0.1, real photos."""

from __future__ import annotations

import io
import socket
import sqlite3
import subprocess
import sys
import threading
import time

import httpx
import pytest
from PIL import Image

from conftest import DATA, need, running

EXAMPLES = DATA / "face_recognition_examples"
CLI = "import sys; from facetwin.cli import main; sys.exit(main(sys.argv[1:]))"


def photo(rel: str) -> tuple[str, bytes, str]:
    path = need(EXAMPLES / rel)
    return path.name, path.read_bytes(), "image/jpeg"


def encoded(img: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def served(model, tmp_path_factory):
    """A keyless server with a gallery, short read timeouts; yields (base URL, gallery path)."""
    from facetwin.service import create_app

    gallery = tmp_path_factory.mktemp("served") / "people.db"
    app = create_app(model, gallery=gallery, api_key=None, read_timeout=1.0, body_deadline=4.0)
    with running(app) as base:
        yield base, gallery


@pytest.fixture
def client(served):
    with httpx.Client(base_url=served[0], timeout=60) as c:
        yield c


# ---------------------------------------------------------------------------- who may drive the server


def test_a_cross_site_form_post_cannot_enroll(client):
    files = {"images": photo("obama/obama.jpg")}
    r = client.post("/v1/people/Mallory/images", files=files, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and "cross-origin" in r.json()["error"]
    r = client.post("/v1/people/Mallory/images", files=files, headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    r = client.post("/v1/people/Mallory/images", files=files, headers={"Origin": "null"})
    assert r.status_code == 403
    assert "Mallory" not in {p["name"] for p in client.get("/v1/people").json()["people"]}
    port = client.base_url.port
    same = client.post("/v1/verify", files={"a": photo("obama/obama.jpg"), "b": photo("obama/obama2.jpg")},
                       headers={"Origin": f"http://127.0.0.1:{port}"})
    assert same.status_code == 200  # the page's own requests still work


def test_a_foreign_host_header_is_refused(client):
    """DNS rebinding: evil.example re-pointed to 127.0.0.1 sends Host: evil.example."""
    client.post("/v1/people/Keeper/images", files={"images": photo("biden/biden.jpg")}).raise_for_status()
    for method, path in (("GET", "/v1/people"), ("DELETE", "/v1/people/Keeper"), ("GET", "/v1/gallery")):
        r = client.request(method, path, headers={"Host": "evil.example:8000"})
        assert r.status_code == 403 and "is not this server" in r.json()["error"], (method, path, r.text)
    assert "Keeper" in {p["name"] for p in client.get("/v1/people").json()["people"]}
    assert client.get("/healthz", headers={"Host": "localhost"}).status_code == 200


def test_security_headers_everywhere(client):
    for r in (client.get("/"), client.get("/healthz"), client.get("/v1/nope"), client.get("/static/app.js")):
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["x-content-type-options"] == "nosniff"
    assert client.get("/v1/people").headers["cache-control"] == "no-store"


def test_with_a_key_only_health_and_the_page_are_public(model):
    from facetwin.service import create_app

    with running(create_app(model, api_key="k3y")) as base, httpx.Client(base_url=base, timeout=30) as c:
        assert c.get("/healthz").json() == {"status": "ok", "api_key_required": True}
        assert c.get("/").status_code == 200 and c.get("/static/app.js").status_code == 200
        for path in ("/docs", "/openapi.json", "/v1/people"):
            assert c.get(path).status_code == 401, path
        assert c.get("/openapi.json", headers={"X-API-Key": "k3y"}).status_code == 200


def test_the_gallery_endpoint_does_not_reveal_server_paths(client, served):
    doc = client.get("/v1/gallery").json()
    assert doc["gallery"] == "people.db"
    assert str(served[1].parent) not in client.get("/v1/gallery").text


# ---------------------------------------------------------------------------- memory and time


def _rss_kb(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def test_highly_compressible_huge_pngs_are_refused_without_decoding(client):
    bomb = encoded(Image.new("L", (8900, 8900)), "PNG")  # 79 megapixels, ~80 kB
    assert len(bomb) < 200_000
    with open("/proc/self/clear_refs", "w") as handle:  # reset the peak RSS of this process (server included)
        handle.write("5")
    before = _rss_kb("VmRSS")
    files = [("images", (f"b{i}.png", bomb, "image/png")) for i in range(8)]
    r = client.post("/v1/people/Bomb/images", files=files)
    assert r.status_code == 413 and "pixels" in r.json()["error"]
    r = client.post("/v1/verify", files={"a": ("a.png", bomb, "image/png"), "b": ("b.png", bomb, "image/png")})
    assert r.status_code == 413
    assert _rss_kb("VmHWM") - before < 150_000  # < 150 MB: nothing was decoded


def test_too_many_photos_in_one_enrolment(client):
    tiny = encoded(Image.new("RGB", (8, 8)), "PNG")
    files = [("images", (f"t{i}.png", tiny, "image/png")) for i in range(17)]
    r = client.post("/v1/people/Many/images", files=files)
    assert r.status_code == 413 and "at most 16" in r.json()["error"]


@pytest.mark.parametrize("length", [50_000, 10_000_000])
def test_a_stalled_body_gets_408_within_the_timeout(served, length):
    host, port = "127.0.0.1", int(served[0].rsplit(":", 1)[1])
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(
            f"POST /v1/embed HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: multipart/form-data; boundary=x\r\n"
            f"Content-Length: {length}\r\n\r\n--x\r\n".encode()
        )
        start = time.monotonic()
        received = b""
        while not received.endswith(b"}") and (chunk := sock.recv(4096)):  # headers, then the JSON body
            received += chunk
        answer = received.decode(errors="replace")
        assert time.monotonic() - start < 8
    assert answer.split()[1] in ("408", "413"), answer
    if length == 50_000:
        assert answer.split()[1] == "408" and "stalled" in answer


def test_an_eps_upload_is_not_decoded(client):
    eps = encoded(Image.new("RGB", (16, 16)), "EPS")
    r = client.post("/v1/embed", files={"image": ("x.eps", eps, "application/postscript")})
    assert r.status_code == 415 and r.json()["error"] == (
        "x.eps: not an image file of an accepted format (JPEG, PNG, WebP, GIF, BMP, TIFF or PPM/PGM)."
    )


@pytest.mark.parametrize("name", ["bad%00name", "evil%E2%80%AEgnp.exe", "..", "a..b", "tab%09name", "x" * 300])
def test_person_names_are_validated(client, name):
    r = client.post(f"/v1/people/{name}/images", files={"images": photo("obama/obama.jpg")})
    assert r.status_code in (400, 404), r.text
    if r.status_code == 400:
        assert r.json()["error"].startswith("the person's name")


def test_a_locked_gallery_answers_503_and_never_stalls_the_model(client, served):
    client.post("/v1/people/Locked/images", files={"images": photo("biden/biden.jpg")}).raise_for_status()
    holder = sqlite3.connect(served[1], isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process writing for a long time
    answers: dict = {}

    def delete():
        answers["delete"] = httpx.delete(served[0] + "/v1/people/Locked", timeout=60)

    thread = threading.Thread(target=delete)
    thread.start()
    time.sleep(0.3)
    start = time.monotonic()
    r = client.post("/v1/embed", files={"image": photo("obama/obama.jpg")})
    embed_seconds = time.monotonic() - start
    thread.join(30)
    holder.execute("ROLLBACK")
    holder.close()
    assert r.status_code == 200 and embed_seconds < 3, embed_seconds
    assert answers["delete"].status_code == 503 and answers["delete"].headers["retry-after"]
    assert "busy" in answers["delete"].json()["error"] and "/" not in answers["delete"].json()["error"]
    assert client.delete("/v1/people/Locked").status_code == 200


def test_serve_on_a_port_in_use_fails_before_saying_serving(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-c", CLI, "serve", "--port", str(port), "--gallery", str(tmp_path / "g.db")],
            capture_output=True, text=True, timeout=120,
        )
    assert done.returncode == 2
    assert "serving" not in done.stdout
    assert done.stderr.strip().startswith(f"facetwin: error: cannot listen on 127.0.0.1:{port}")
    assert len(done.stderr.strip().splitlines()) == 1


def test_headers_that_never_finish_get_408_and_the_connection_closes(model):
    """Slowloris: a request line and half the headers, then nothing (the server of `facetwin serve`)."""
    import uvicorn

    from facetwin.service import create_app
    from facetwin.service.protocol import HeaderTimeoutProtocol

    HeaderTimeoutProtocol.header_timeout = 1.0
    try:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        config = uvicorn.Config(create_app(model, api_key=None), host="127.0.0.1", port=port,
                                http=HeaderTimeoutProtocol, log_level="warning")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.02)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as slow, \
                socket.create_connection(("127.0.0.1", port), timeout=10) as silent:
            slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            start = time.monotonic()
            answers = [s.recv(4096) for s in (slow, silent)]
            assert time.monotonic() - start < 5
            assert all(a.startswith(b"HTTP/1.1 408") and b"did not arrive" in a for a in answers), answers
            assert slow.recv(4096) == b""  # closed
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200  # normal requests unaffected
        with socket.create_connection(("127.0.0.1", port), timeout=10) as bad:
            bad.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            answer = bad.recv(4096)
        assert answer.startswith(b"HTTP/1.1 400") and b'{"error": "malformed' in answer, answer
        server.should_exit = True
        thread.join(10)
    finally:
        HeaderTimeoutProtocol.header_timeout = 10.0
