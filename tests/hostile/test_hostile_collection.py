"""The Collection view and /v1/find as an attacker meets them (issue 27, items 1, 2, 4, 5, 9 and 11): a real uvicorn
server on 127.0.0.1 over a real index of real photos, and crafted copies of that index."""

from __future__ import annotations

import concurrent.futures
import io
import json
import os
import shutil
import socket
import threading
import time

import httpx
import numpy as np
import pyarrow as pa
import pytest
from index_helpers import (
    EXAMPLES,
    PROBE,
    cli,
    edit_manifest,
    edit_photos,
    photo_copy,
    read_shard,
    replace_column,
    write_shard,
)
from PIL import Image

from facetwin.collection import cluster_store, people

from conftest import running

ESCAPE_NAME = "copy\x1b[2J\x1b]0;owned\x07.jpg"  # a file name that would clear a terminal and retitle it


def _rss_kb(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])
    return 0


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    """Photos (with a 48-megapixel JPEG, a 30-megapixel PNG, symlinks and an escape-coded file name), a photo outside
    them, and the clustered index of the photos."""
    import facetwin

    root = tmp_path_factory.mktemp("collection")
    photos = photo_copy(root)
    face = Image.open(PROBE).convert("RGB")
    face.resize((8000, 6000), Image.Resampling.BILINEAR).save(photos / "obama" / "huge.jpg", quality=85)
    face.resize((6000, 5000), Image.Resampling.BILINEAR).save(photos / "obama" / "huge.png", compress_level=1)
    shutil.copy(EXAMPLES / "obama" / "obama1.jpg", photos / "obama" / ESCAPE_NAME)
    outside = root / "elsewhere"
    outside.mkdir()
    shutil.copy(EXAMPLES / "biden" / "biden2.jpg", outside / "secret.jpg")
    (photos / "links").mkdir()
    (photos / "links" / "inside.jpg").symlink_to(photos / "rose_leslie" / "img1.jpg")
    (photos / "links" / "outside.jpg").symlink_to(outside / "secret.jpg")
    index = root / "index"
    facetwin.index([photos], index, engine="local", progress=False)
    people.cluster_index(index)
    return {"root": root, "photos": photos, "outside": outside / "secret.jpg", "index": index}


@pytest.fixture(scope="module")
def served(layout, model):
    from facetwin.service import create_app

    with running(create_app(model, api_key=None, index_path=layout["index"], read_timeout=15.0)) as base:
        yield base


def _face_of(index, name: str) -> int:
    from facetwin.collection.index_faces import read_faces

    faces = read_faces(index, embeddings=False)
    return int(faces.face_ids[[os.path.basename(p) for p in faces.paths].index(name)])


def _no_server_paths(text: str, *folders) -> None:
    for folder in folders:
        assert str(folder) not in text, text
    assert "--" not in text and "`" not in text, text


# ---------------------------------------------------------------------------- item 1: thumbnails and memory


def test_thumbnails_of_huge_photos_stay_inside_the_pixel_budget(served, layout):
    face = _face_of(layout["index"], "huge.jpg")
    with open("/proc/self/clear_refs", "w") as handle:  # reset the peak RSS of this process (the server's)
        handle.write("5")
    before = _rss_kb("VmRSS")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: httpx.get(f"{served}/v1/faces/{face}/thumbnail", timeout=120), range(8)))
    grown = _rss_kb("VmHWM") - before
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers if a.status_code != 200]
    assert Image.open(io.BytesIO(answers[0].content)).size == (112, 112)
    assert grown < 250_000, f"8 thumbnails of a 48 MP photo raised the server's peak RSS by {grown // 1000} MB"
    png = httpx.get(f"{served}/v1/faces/{_face_of(layout['index'], 'huge.png')}/thumbnail", timeout=60)
    assert png.status_code == 413 and "pixels" in png.json()["error"]  # 30 MP of PNG: over the 25 MP per photo
    _no_server_paths(png.text, layout["root"])


# ---------------------------------------------------------------------------- item 2: which files may be read


def _crafted_copy(layout, tmp_path, target, digest, size):
    """A copy of the index whose first photo (and its rows) now names ``target`` with the given digest and size.
    Paths are kept below the archive root and never leave it (``..`` is refused), so the forger moves the root up
    to the folder above the photos (the manifest's shards and folders follow, as a root that widened does) and
    names ``target`` from there: inside the root, outside the folders that were indexed."""
    index = shutil.copytree(layout["index"], tmp_path / "crafted")
    folder = layout["photos"].name
    photo = {}

    def rebase(doc):
        doc["root"] = str(layout["root"])
        doc["roots"] = doc["photo_roots"] = [folder]
        for entry in doc["shards"][1:]:
            entry["prefix"] = folder

    def point(rows):
        photo.update(rows[0])
        for row in rows:
            row["path"] = f"{folder}/{row['path']}"
        rows[0].update(path=os.path.relpath(target, layout["root"]), sha256=digest, size=size)

    edit_manifest(index, rebase)
    edit_photos(index, point)
    path = index / "shards" / "shard-000000.parquet"
    table, meta = read_shard(path)
    ids = table["face_id"].to_numpy()
    digests = [digest if i == photo["face_id"] else d for i, d in zip(ids, table["sha256"].to_pylist(), strict=True)]
    write_shard(path, replace_column(table, "sha256", pa.array(digests)), meta)
    return index, photo["face_id"]


def test_an_index_cannot_make_the_server_read_a_file_outside_its_roots(layout, model, tmp_path):
    import hashlib

    from facetwin.service import create_app

    secret = layout["outside"]
    data = secret.read_bytes()
    index, face = _crafted_copy(layout, tmp_path, secret, hashlib.sha256(data).hexdigest(), len(data))
    missing, _ = _crafted_copy(layout, tmp_path / "b", secret.with_name("absent.jpg"), "0" * 64, 1000)
    answers = []
    for crafted in (index, missing):
        with running(create_app(model, api_key=None, index_path=crafted)) as base:
            answers.append(httpx.get(f"{base}/v1/faces/{face}/thumbnail", timeout=60))
    assert [a.status_code for a in answers] == [404, 404]
    assert answers[0].json() == answers[1].json()  # the same sentence: whether the file exists is not told
    _no_server_paths(answers[0].text, layout["root"], secret.name)


def test_photos_changed_or_pointing_outside_after_indexing_are_not_shown(served, layout):
    index, photos = layout["index"], layout["photos"]
    outside = httpx.get(f"{served}/v1/faces/{_face_of(index, 'outside.jpg')}/thumbnail", timeout=60)
    assert outside.status_code == 404  # a symlink in the photos leading outside them
    link = photos / "links" / "inside.jpg"
    inside = f"{served}/v1/faces/{_face_of(index, 'inside.jpg')}/thumbnail"
    assert httpx.get(inside, timeout=60).status_code == 200  # and now it is in the thumbnail cache
    link.unlink()
    link.symlink_to(layout["outside"])  # re-pointed after indexing
    assert httpx.get(inside, timeout=60).status_code == 404
    link.unlink()
    link.symlink_to(photos / "kit_harington" / "john1.jpeg")  # inside the roots, but not the photo indexed
    assert httpx.get(inside, timeout=60).status_code == 404
    link.unlink()
    link.symlink_to(photos / "rose_leslie" / "img1.jpg")
    assert httpx.get(inside, timeout=60).status_code == 200
    copy = photos / "biden" / "biden.jpg"
    url = f"{served}/v1/faces/{_face_of(index, 'biden.jpg')}/thumbnail"
    assert httpx.get(url, timeout=60).status_code == 200
    original = copy.read_bytes()
    copy.write_bytes((EXAMPLES / "obama" / "obama2.jpg").read_bytes())  # the same path, another photo
    try:
        replaced = httpx.get(url, timeout=60)
        assert replaced.status_code == 404 and "as it was indexed" in replaced.json()["error"]
        _no_server_paths(replaced.text, layout["root"])
    finally:
        copy.write_bytes(original)


# ---------------------------------------------------------------------------- items 4 and 5: cluster routes


def test_cluster_requests_have_size_and_work_caps(served, layout):
    index = layout["index"]
    saved = cluster_store.path_of(index).read_bytes()
    n = 50_000  # a table of 50 k faces in 20 k clusters (the audit's case)
    big = cluster_store.ClusterTable(np.arange(n, dtype=np.int64), np.arange(n, dtype=np.int64) % 20_000, {}, 20_000)
    cluster_store.save(index, big)
    try:
        ids = ",".join(str(i) for i in range(20_000))
        start = time.monotonic()
        many = httpx.post(f"{served}/v1/clusters/merge", data={"ids": ids}, timeout=60)
        assert many.status_code == 413 and time.monotonic() - start < 2, (many.status_code, many.text)
        start = time.monotonic()
        merged = httpx.post(f"{served}/v1/clusters/merge", data={"ids": ",".join(map(str, range(1000)))}, timeout=60)
        assert merged.status_code == 200 and merged.json()["faces"] == int((big.clusters < 1000).sum())
        assert time.monotonic() - start < 5
        unknown = httpx.post(f"{served}/v1/clusters/merge", data={"ids": "1000,999999"}, timeout=60)
        assert unknown.status_code == 404 and unknown.json()["error"] == "this index has no cluster 999999."
        name = httpx.post(f"{served}/v1/clusters/1000/name", data={"name": "x" * 100_000}, timeout=60)
        assert name.status_code == 413  # the body alone is over what a cluster route takes
    finally:
        cluster_store.path_of(index).write_bytes(saved)


@pytest.mark.parametrize("bad", ["\x1b[2J\x1b]0;owned\x07Eve", "Eve\u202egnp.exe", "../../Eve", "a\nb", " "])
def test_cluster_names_follow_the_person_name_rules(served, layout, tmp_path, bad):
    index = layout["index"]
    cluster = next(iter(cluster_store.load(index).sizes()))
    before = cluster_store.path_of(index).read_bytes()
    answer = httpx.post(f"{served}/v1/clusters/{cluster}/name", data={"name": bad}, timeout=60)
    if bad.strip():
        assert answer.status_code == 400 and answer.json()["error"].startswith("the person's name")
        code, _, err = cli("cluster", "name", index, cluster, bad)
        assert code == 2 and err.count("\n") == 1 and "\x1b" not in err and "\u202e" not in err
        assert cluster_store.path_of(index).read_bytes() == before
    else:  # an empty name removes the name
        assert answer.status_code == 200 and answer.json()["name"] is None


def test_export_without_names_refuses_and_creates_no_gallery(layout, tmp_path):
    index = shutil.copytree(layout["index"], tmp_path / "index")
    table = cluster_store.load(index)
    table.names.clear()
    cluster_store.save(index, table)
    gallery = tmp_path / "people.db"
    code, _, err = cli("cluster", "export", index, "--gallery", gallery)
    assert code == 2 and "no cluster has a name" in err and not gallery.exists()
    cluster = next(iter(table.sizes()))
    assert cli("cluster", "name", index, cluster, "Zoë O'Neil")[0] == 0
    code, out, _ = cli("cluster", "export", index, "--gallery", gallery, "--json")
    assert code == 0 and json.loads(out)["people"] == 1


def test_names_wait_for_a_clustering_run_only_a_moment(served, layout, monkeypatch):
    from facetwin.service import collection

    monkeypatch.setattr(collection, "LOCK_WAIT", 0.5)
    index = layout["index"]
    cluster = next(iter(cluster_store.load(index).sizes()))
    held, release = threading.Event(), threading.Event()

    def long_run():  # another process's `facetwin cluster` holding the table
        with cluster_store.locked(index):
            held.set()
            release.wait(20)

    thread = threading.Thread(target=long_run)
    thread.start()
    held.wait(10)
    try:
        start = time.monotonic()
        answer = httpx.post(f"{served}/v1/clusters/{cluster}/name", data={"name": "Ada"}, timeout=60)
        assert answer.status_code == 503 and answer.headers["retry-after"] and time.monotonic() - start < 3
    finally:
        release.set()
        thread.join()
    assert httpx.post(f"{served}/v1/clusters/{cluster}/name", data={"name": ""}, timeout=60).status_code == 200


def test_terminal_output_prints_paths_and_names_safely(layout):
    code, out, _ = cli("find", PROBE, "--index", layout["index"])
    assert code == 0 and "copy\\x1b[2J" in out and "\x1b" not in out and "\x07" not in out
    code, out, _ = cli("cluster", "list", layout["index"])
    assert code == 0 and "\x1b" not in out


# ---------------------------------------------------------------------------- item 9: no server paths in answers


def test_web_answers_name_no_server_folders_and_no_flags(served, layout):
    root = layout["root"]
    with open(PROBE, "rb") as handle:
        found = httpx.post(f"{served}/v1/find", files={"image": ("probe.jpg", handle, "image/jpeg")}, timeout=60)
    assert found.status_code == 200 and found.json()["hits"]
    _no_server_paths(found.text, root)
    assert {h["path"].split("/")[0] for h in found.json()["hits"]} == {"photos"}  # from the folder indexed
    assert all(h["path"].split("/")[1] == "obama" for h in found.json()["hits"])
    answers = [
        httpx.post(f"{served}/v1/clusters/424242/name", data={"name": "x"}, timeout=60),
        httpx.post(f"{served}/v1/clusters/merge", data={"ids": "1"}, timeout=60),
        httpx.get(f"{served}/v1/faces/999999/thumbnail", timeout=60),
        httpx.get(f"{served}/v1/clusters", timeout=60),
        httpx.get(f"{served}/healthz", timeout=60),
    ]
    assert [a.status_code for a in answers[:3]] == [404, 422, 404]
    for answer in answers:
        _no_server_paths(answer.text, root)


def test_an_unclustered_index_says_so_without_paths_or_commands(layout, model, tmp_path):
    from facetwin.service import create_app

    index = shutil.copytree(layout["index"], tmp_path / "index")
    cluster_store.path_of(index).unlink()
    with running(create_app(model, api_key=None, index_path=index)) as base:
        answer = httpx.post(f"{base}/v1/clusters/merge", data={"ids": "1,2"}, timeout=60)
    assert answer.status_code == 422 and "no clusters yet" in answer.json()["error"]
    _no_server_paths(answer.text, tmp_path)


# ---------------------------------------------------------------------------- item 11: a declared oversize body


@pytest.mark.parametrize(("path", "length"), [("/v1/embed", 100_000_000_000), ("/v1/clusters/merge", 200_000)])
def test_a_declared_oversize_body_gets_413_at_once(served, path, length):
    port = int(served.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: multipart/form-data; boundary=x\r\n"
            f"Content-Length: {length}\r\n\r\n--x\r\n".encode()
        )  # and then nothing more
        start = time.monotonic()
        received = b""
        while not received.endswith(b"}") and (chunk := sock.recv(4096)):
            received += chunk
        seconds = time.monotonic() - start
    head, _, body = received.decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 413") and seconds < 1.5, (head, seconds)
    assert "connection: close" in head.lower() and "larger than" in json.loads(body)["error"]


def test_a_sender_still_uploading_reads_the_413(served):
    """The whole oversize body on its way: the client gets the answer, not a reset."""
    big = b"\xff" * (12 * 2**20)
    answer = httpx.post(f"{served}/v1/embed", files={"image": ("big.jpg", big, "image/jpeg")}, timeout=60)
    assert answer.status_code == 413 and "10 MB" in answer.json()["error"]
    assert httpx.get(f"{served}/healthz", timeout=10).status_code == 200
