"""download.fetch against a real HTTP server on 127.0.0.1: full, interrupted + resumed, corrupt, no network."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys

import pytest

from facetwin import FacetwinError
from facetwin.backbones.vggface import weights as W
from facetwin.core.download import fetch

from conftest import FIXTURES, need
from download_server import Server

H5 = FIXTURES / "vggface-keras" / "vggface_keras_legacy.h5"


@pytest.fixture(scope="module")
def payload() -> bytes:
    return need(H5).read_bytes()


@pytest.fixture
def server(payload):
    srv = Server(payload)
    yield srv
    srv.close()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_full_download_with_digest_and_structure_check(server, payload, tmp_path):
    dest = tmp_path / "w.h5"
    got = fetch(server.url, dest, sha256=_sha(payload), verify=W.check_h5, progress=False)
    assert got == dest and dest.read_bytes() == payload
    assert not (tmp_path / "w.h5.part").exists()
    assert server.requests == [None]


def test_interrupted_download_resumes_within_one_call(server, payload, tmp_path):
    server.drop_after = [len(payload) // 3]
    dest = tmp_path / "w.h5"
    fetch(server.url, dest, sha256=_sha(payload), progress=False, retries=2)
    assert dest.read_bytes() == payload
    assert server.requests == [None, f"bytes={len(payload) // 3}-"]


def test_interrupted_download_resumes_on_the_next_call(server, payload, tmp_path):
    server.drop_after = [1_000_000]
    dest = tmp_path / "w.h5"
    with pytest.raises(FacetwinError, match="interrupted.*run the same command again to resume"):
        fetch(server.url, dest, progress=False, retries=0)
    part = tmp_path / "w.h5.part"
    assert part.stat().st_size == 1_000_000 and not dest.exists()
    fetch(server.url, dest, sha256=_sha(payload), verify=W.check_h5, progress=False)
    assert dest.read_bytes() == payload and not part.exists()
    assert server.requests == [None, "bytes=1000000-"]


def test_server_ignoring_range_restarts_cleanly(server, payload, tmp_path):
    (tmp_path / "w.h5.part").write_bytes(payload[:5000])
    server.ignore_range = True
    dest = tmp_path / "w.h5"
    fetch(server.url, dest, sha256=_sha(payload), progress=False)
    assert dest.read_bytes() == payload


def test_complete_part_file_is_finished_without_downloading_again(server, payload, tmp_path):
    (tmp_path / "w.h5.part").write_bytes(payload)
    dest = tmp_path / "w.h5"
    fetch(server.url, dest, sha256=_sha(payload), progress=False)
    assert dest.read_bytes() == payload and server.requests == [f"bytes={len(payload)}-"]


def test_corrupt_download_is_refused_and_nothing_is_left(server, payload, tmp_path):
    corrupt = bytearray(payload)
    corrupt[len(corrupt) // 2] ^= 0xFF
    server.payload = bytes(corrupt)
    dest = tmp_path / "w.h5"
    with pytest.raises(FacetwinError, match="corrupt: SHA-256"):
        fetch(server.url, dest, sha256=_sha(payload), progress=False)
    assert list(tmp_path.iterdir()) == []
    # Without a digest, the structural check refuses a file that is not VGG-Face weights.
    server.payload = payload[: len(payload) // 2]
    with pytest.raises(FacetwinError, match="refused.*truncated.*deleted"):
        fetch(server.url, dest, verify=W.check_h5, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_no_network_says_how_to_fetch_by_hand(tmp_path):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    url = f"http://127.0.0.1:{port}/vgg_face_weights.h5"
    with pytest.raises(FacetwinError, match="could not download.*import vggface") as info:
        fetch(url, tmp_path / "w.h5", progress=False, hint=W.IMPORT_HINT)
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_http_error_is_one_sentence(server, tmp_path):
    server.httpd.RequestHandlerClass.do_GET = lambda self: self.send_error(404)  # this server's class only
    with pytest.raises(FacetwinError, match="server answered HTTP 404") as info:
        fetch(server.url, tmp_path / "w.h5", progress=False)
    assert "\n" not in str(info.value) and list(tmp_path.iterdir()) == []


def test_cli_fetch_vggface_from_loopback(server, payload, tmp_path, facetwin_home):
    server.drop_after = [len(payload) // 2]  # the CLI resumes by itself
    env = {"FACETWIN_HOME": str(facetwin_home), "PATH": ""}
    run = [sys.executable, "-c", "import sys; from facetwin.cli import main; sys.exit(main(sys.argv[1:]))"]
    result = subprocess.run(
        [*run, "weights", "fetch", "vggface", "--url", server.url, "--quiet"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    assert server.requests == [None, f"bytes={len(payload) // 2}-"]
    converted = facetwin_home / "weights" / "vggface.safetensors"
    assert converted.is_file() and not (facetwin_home / "weights" / "vgg_face_weights.h5").exists()
    assert W.load(None).sha256 == _sha(payload)
    listing = subprocess.run([*run, "weights", "list"], capture_output=True, text=True, env=env)
    assert "present" in listing.stdout and _sha(payload) in listing.stdout
    again = subprocess.run(
        [*run, "weights", "fetch", "vggface", "--url", server.url, "--quiet"], capture_output=True, text=True, env=env
    )
    assert again.returncode == 0 and "already present" in again.stdout and len(server.requests) == 2


def test_cli_fetch_interrupted_is_listed_and_resumed(server, payload, facetwin_home):
    # Each request breaks after this many bytes: 4 attempts (1 + 3 retries) leave 1,000,000 bytes behind;
    # the next command resumes at 1,000,000, breaks once more after 500,000 and resumes again by itself.
    server.drop_after = [100_000, 200_000, 300_000, 400_000, 500_000]
    env = {"FACETWIN_HOME": str(facetwin_home), "PATH": ""}
    run = [sys.executable, "-c", "import sys; from facetwin.cli import main; sys.exit(main(sys.argv[1:]))"]
    first = subprocess.run(
        [*run, "weights", "fetch", "vggface", "--url", server.url, "--quiet"], capture_output=True, text=True, env=env
    )
    assert first.returncode == 2 and "run the same command again to resume" in first.stderr
    listing = subprocess.run([*run, "weights", "list"], capture_output=True, text=True, env=env).stdout
    assert "absent" in listing and "partial download: 1,000,000 bytes" in listing
    second = subprocess.run(
        [*run, "weights", "fetch", "vggface", "--url", server.url, "--quiet"], capture_output=True, text=True, env=env
    )
    assert second.returncode == 0, second.stderr
    assert server.requests[-2:] == ["bytes=1000000-", "bytes=1500000-"]
    assert W.load(None).sha256 == _sha(payload)
