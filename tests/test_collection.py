"""Indexing a photo collection in-process: every face, bad files listed, resumable after kill -9, idempotent,
incremental; find, gallery import and /v1/find on the result."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from collection_helpers import assert_same_faces, faces_by_key, photo_folder, photos_of
from conftest import running

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return photo_folder(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="module")
def full_index(photos, tmp_path_factory) -> Path:
    import facetwin

    out = tmp_path_factory.mktemp("full") / "index"
    facetwin.index([photos], out, engine="local", progress=False, shard_photos=4)
    return out


def test_every_face_and_every_bad_file(full_index, photos):
    from facetwin.collection import IndexStore

    store = IndexStore(full_index)
    reasons = {Path(e["path"]).name: e["reason"] for e in store.errors()}
    assert set(reasons) == {"broken.jpg", "empty.jpg"}  # notes.md and noise.bin are not photos: skipped
    assert "empty" in reasons["empty.jpg"]
    assert "broken or truncated" in reasons["broken.jpg"] or "not an image" in reasons["broken.jpg"]
    assert all(str(photos) in r for r in reasons.values())
    faces = faces_by_key(full_index)
    good = [p for p in photos.rglob("*") if p.is_file() and p.parent.name != "bad"]
    assert {p for p, _ in faces} == {str(p) for p in good}  # every real photo has its face(s)
    manifest = store.manifest
    assert manifest["counts"]["photos"] == len(good) + 2 and manifest["counts"]["errors"] == 2
    assert manifest["runs"][0]["skipped"] == 2
    assert manifest["counts"]["faces"] == len(faces) and manifest["model"]["source"] == "sface"
    row = next(iter(faces.values()))
    assert len(row["box"]) == 4 and len(row["landmarks"]) == 10 and len(row["embedding"]) == 128
    assert len(row["sha256"]) == 64 and 0 < row["score"] <= 1


def test_rerun_adds_nothing_then_only_new_photos(full_index, photos, tmp_path):
    import facetwin

    out = tmp_path / "index"
    shutil.copytree(full_index, out)
    before = faces_by_key(out)
    again = facetwin.index([photos], out, progress=False)
    assert again.todo == 0 and again.added_faces == 0 and faces_by_key(out).keys() == before.keys()
    os.utime(next(photos.rglob("*.jpg")))  # touched, same bytes: nothing to redo
    assert facetwin.index([photos], out, progress=False).todo == 0
    extra = tmp_path / "more" / "obama"
    extra.mkdir(parents=True)
    shutil.copy(photos / "obama" / "obama.jpg", extra / "copy.jpg")
    listing = tmp_path / "more" / "list.txt"
    listing.write_text("# new photos\nobama/copy.jpg\n")
    grown = facetwin.index([photos, listing], out, progress=False)
    assert grown.todo == 1 and grown.added_faces == 1
    assert set(faces_by_key(out)) - set(before) == {(str(extra / "copy.jpg"), 0)}


def test_changed_photo_replaces_its_faces(full_index, photos, tmp_path):
    import facetwin

    folder = tmp_path / "photos"
    shutil.copytree(photos, folder)
    out = tmp_path / "index"
    facetwin.index([folder], out, progress=False)
    target = folder / "biden" / "biden.jpg"
    shutil.copy(folder / "obama" / "obama.jpg", target)  # same path, other photo
    os.utime(target, ns=(time.time_ns(), time.time_ns() + 10**9))
    summary = facetwin.index([folder], out, progress=False)
    assert summary.todo == 1
    faces = faces_by_key(out)
    assert [k for k in faces if k[0] == str(target)] == [(str(target), 0)]
    assert summary.counts["faces"] == len(faces)
    hits = facetwin.find(folder / "biden" / "biden2.jpg", out).hits
    assert str(target) not in {h.path for h in hits}


def test_killed_run_resumes_to_the_same_index(full_index, photos, tmp_path):
    import facetwin

    out = tmp_path / "index"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "facetwin.cli", "index", str(photos), "--out", str(out), "--engine", "local",
           "--shard-photos", "2", "--quiet"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if len(list((out / "shards").glob("shard-*.parquet"))) >= 2:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    partial = photos_of(out)
    assert 0 < len(partial) < len(photos_of(full_index))
    summary = facetwin.index([photos], out, progress=False)
    assert summary.todo == len(photos_of(full_index)) - len(partial)
    assert_same_faces(full_index, out)
    assert photos_of(full_index) == photos_of(out)


def test_find_cli_and_ann_index_grows(full_index, photos, tmp_path, capsys):
    import json

    from facetwin.cli import main

    out = tmp_path / "index"
    shutil.copytree(full_index, out)
    assert main(["find", str(photos / "obama" / "obama.jpg"), "--index", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["method"] == "faiss-flat" and (out / "ann" / "state.json").is_file()
    first = json.loads((out / "ann" / "state.json").read_text())["segments"]
    folders = [Path(h["path"]).parent.name for h in result["hits"]]
    assert folders and set(folders) == {"obama"} and result["hits"][0]["path"].endswith("obama.jpg")
    assert all(h["distance"] <= result["threshold"] for h in result["hits"])
    assert len(result["hits"]) == len(list((photos / "obama").iterdir()))
    more = tmp_path / "more"
    more.mkdir()
    shutil.copy(photos / "obama" / "obama1.jpg", more / "again.jpg")
    assert main(["index", str(more), "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["find", str(photos / "obama" / "obama.jpg"), "--index", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert str(more / "again.jpg") in {h["path"] for h in result["hits"]}
    segments = json.loads((out / "ann" / "state.json").read_text())["segments"]
    assert segments[: len(first)] == first and len(segments) == len(first) + 1  # the new faces only, beside
    assert sum(s["count"] for s in segments) == result["faces_searched"]


def test_cli_errors_are_one_line(tmp_path, capsys):
    from facetwin.cli import main

    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"")
    assert main(["find", "nothing.jpg", "--index", str(tmp_path / "none")]) == 2
    assert main(["find", str(photo), "--index", str(tmp_path / "none")]) == 2
    assert main(["index", str(tmp_path / "missing"), "--out", str(tmp_path / "i")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3, err
    assert "nothing.jpg: no such file" in err[0] and "none" in err[1] and "no such folder" in err[2]


def test_gallery_import_and_http_find(full_index, photos, tmp_path, facetwin_home):
    import httpx

    from facetwin.collection.gallery_import import import_index
    from facetwin.gallery import Gallery
    from facetwin.service import create_app

    gallery_file = tmp_path / "people.db"
    first = import_index(full_index, gallery_file)
    assert first["people"] == 5 and first["enrolled"] == len(faces_by_key(full_index))
    assert import_index(full_index, gallery_file)["enrolled"] == 0  # nothing enrolled twice
    gallery = Gallery(gallery_file)
    assert gallery.identify(photos / "biden" / "biden.jpg").person == "biden"

    app = create_app("sface", index_path=full_index)
    with running(app) as url:
        with open(photos / "kit_harington" / "john1.jpeg", "rb") as f:
            reply = httpx.post(f"{url}/v1/find", files={"image": ("john1.jpeg", f, "image/jpeg")}, timeout=60)
        assert reply.status_code == 200, reply.text
        doc = reply.json()
        assert {Path(h["path"]).parent.name for h in doc["hits"]} == {"kit_harington"}
        bad = httpx.post(f"{url}/v1/find", files={"image": ("x.jpg", b"nope", "image/jpeg")}, timeout=60)
        assert bad.status_code == 415 and "error" in bad.json()
