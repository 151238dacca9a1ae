"""Research-licensed trunks: `facetwin weights fetch|import NAME` with the licence accepted once, downloads from a
real HTTP server on 127.0.0.1 (a zip holding the weights, interrupted and resumed), and the backbones that load them.

Skips with a reason when ``../shared/weights`` is absent.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile

import pytest

from conftest import DATA, SHARED, need
from download_server import Server

WEIGHTS = SHARED / "weights"
ARCFACE = WEIGHTS / "arcface_w600k_mbf_int8.onnx"
XXS = WEIGHTS / "edgeface_xxs_q.pt"
RUN = [sys.executable, "-c", "import sys; from facetwin.cli import main; sys.exit(main(sys.argv[1:]))"]


def cli(home, *args) -> subprocess.CompletedProcess:
    env = {"FACETWIN_HOME": str(home), "PATH": ""}
    return subprocess.run([*RUN, *map(str, args)], capture_output=True, text=True, env=env, timeout=300)


def listing(home) -> dict[str, dict]:
    done = cli(home, "weights", "list", "--json")
    assert done.returncode == 0, done.stderr
    return {row["name"]: row for row in json.loads(done.stdout)}


def test_import_needs_the_licence_once(facetwin_home):
    refused = cli(facetwin_home, "weights", "import", "arcface-mbf", need(ARCFACE))
    assert refused.returncode == 2 and refused.stdout == ""
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "non-commercial research" in refused.stderr and "--accept-license" in refused.stderr
    assert not listing(facetwin_home)["arcface-mbf"]["present"]
    missing = cli(facetwin_home, "verify", need(DATA / "lfw-dev" / "images" / "Colin_Powell" / "Colin_Powell_0001.jpg"),
                  DATA / "lfw-dev" / "images" / "Colin_Powell" / "Colin_Powell_0002.jpg", "--backbone", "arcface-mbf")
    assert missing.returncode == 2 and "weights fetch arcface-mbf --accept-license" in missing.stderr

    accepted = cli(facetwin_home, "weights", "import", "arcface-mbf", ARCFACE, "--accept-license")
    assert accepted.returncode == 0, accepted.stderr
    assert "int8" in accepted.stdout and "non-commercial research" in accepted.stdout
    again = cli(facetwin_home, "weights", "import", "arcface-mbf", ARCFACE)  # remembered: no flag needed
    assert again.returncode == 0, again.stderr
    row = listing(facetwin_home)["arcface-mbf"]
    assert row["present"] and row["form"] == "int8" and row["licence_accepted"]
    assert row["sha256"] == "7caa7fb0ad6c37b33e6c59f6411084b487aaabd596bba645d2cce391a5871120"


def test_import_refuses_another_network(facetwin_home):
    wrong = cli(facetwin_home, "weights", "import", "edgeface-xs", need(XXS), "--accept-license")
    assert wrong.returncode == 2 and len(wrong.stderr.strip().splitlines()) == 1
    assert str(XXS) in wrong.stderr and "holds EdgeFace-XXS weights, not EdgeFace-XS" in wrong.stderr
    assert not listing(facetwin_home)["edgeface-xs"]["present"]


def _zip(member: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("buffalo_sc/det_500m.onnx", b"a detector we do not keep")
        zf.writestr(f"buffalo_sc/{member}", data)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def float_graph_bytes() -> bytes:
    """The float graph facetwin makes of the int8 file: an ONNX file of the upstream float form."""
    from facetwin.backbones.arcface_mbf.graph import read_graph

    return read_graph(need(ARCFACE)).model.SerializeToString()


def test_fetch_arcface_zip_from_loopback_resumes_and_keeps_only_the_network(float_graph_bytes, facetwin_home):
    archive = _zip("w600k_mbf.onnx", float_graph_bytes)
    server = Server(archive, name="buffalo_sc.zip")
    try:
        server.drop_after = [len(archive) // 3]  # the connection breaks; the download resumes by itself
        refused = cli(facetwin_home, "weights", "fetch", "arcface-mbf", "--url", server.url, "--quiet")
        assert refused.returncode == 2 and "--accept-license" in refused.stderr and server.requests == []
        done = cli(facetwin_home, "weights", "fetch", "arcface-mbf", "--url", server.url, "--quiet", "--accept-license")
        assert done.returncode == 0, done.stderr
        assert server.requests == [None, f"bytes={len(archive) // 3}-"]
    finally:
        server.close()
    store = facetwin_home / "weights" / "arcface-mbf"
    assert sorted(p.name for p in store.rglob("*") if p.is_file()) == ["w600k_mbf.onnx", "weights.json"]
    assert (store / "w600k_mbf.onnx").read_bytes() == float_graph_bytes
    row = listing(facetwin_home)["arcface-mbf"]
    assert row["present"] and row["form"] == "float"
    again = cli(facetwin_home, "weights", "fetch", "arcface-mbf", "--url", server.url, "--quiet")
    assert again.returncode == 0 and "already present" in again.stdout


def test_fetch_of_an_archive_without_the_network_installs_nothing(facetwin_home):
    server = Server(_zip("something_else.onnx", b"not it"), name="buffalo_sc.zip")
    try:
        done = cli(facetwin_home, "weights", "fetch", "arcface-mbf", "--url", server.url, "--quiet", "--accept-license")
    finally:
        server.close()
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "holds no w600k_mbf.onnx" in done.stderr
    store = facetwin_home / "weights" / "arcface-mbf"
    assert not [p for p in store.rglob("*") if p.is_file()]


def test_fetched_edgeface_embeds_and_a_changed_file_is_refused(facetwin_home, tmp_path):
    data = need(XXS).read_bytes()
    server = Server(data, name="edgeface_xxs_q.pt")
    try:
        done = cli(facetwin_home, "weights", "fetch", "edgeface-xxs", "--url", server.url, "--accept-license")
    finally:
        server.close()
    assert done.returncode == 0, done.stderr
    photo = need(DATA / "lfw-dev" / "images" / "Colin_Powell" / "Colin_Powell_0001.jpg")
    out = tmp_path / "e.npy"
    embedded = cli(facetwin_home, "embed", photo, "--backbone", "edgeface-xxs", "--out", out)
    assert embedded.returncode == 0, embedded.stderr
    import numpy as np

    vector = np.load(out)
    assert vector.shape == (1, 512) and abs(float(np.linalg.norm(vector)) - 1.0) < 1e-4
    stored = facetwin_home / "weights" / "edgeface-xxs" / "edgeface_xxs.pt"
    stored.write_bytes(stored.read_bytes()[:-10] + b"0123456789")
    damaged = cli(facetwin_home, "embed", photo, "--backbone", "edgeface-xxs")
    assert damaged.returncode == 2 and "changed since they were installed" in damaged.stderr
