"""`facetwin index` on a real photo folder: photos chosen by name ending and signature, everything else skipped and
counted (not unreadable); a run of only unreadable files, or of no photo at all, exits 2 with one sentence;
``--backbone NAME`` / ``--model RUN_DIR`` like every other command."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from facetwin.collection.scan import NO_SUFFIX, survey
from facetwin.vision.io import FORMATS, PHOTO_SUFFIXES, image_signature

from conftest import DATA, need

OBAMA = DATA / "face_recognition_examples" / "obama" / "obama.jpg"
SAVE_AS = {"JPEG": "JPEG", "PNG": "PNG", "WEBP": "WEBP", "GIF": "GIF", "BMP": "BMP", "TIFF": "TIFF", "PPM": "PPM"}


def _cli(*args, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "FACETWIN_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "facetwin.cli", *map(str, args)], capture_output=True, text=True,
                          env=env)


def _one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_accepted_format_is_known_by_its_signature(fmt):
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(buffer, SAVE_AS[fmt])
    assert image_signature(buffer.getvalue()[:32]) == fmt
    if fmt == "PPM":  # netpbm headers may carry comments before the width
        assert image_signature(b"P5\n# made by GIMP\n8 8\n255\n") == "PPM"


@pytest.mark.parametrize("head", [
    b"BMW service notes, 2024\n", b"P6 is a good size\n", b"<?xpacket begin='' id='W5M0MpCehiHzreSzNTczkc9d'?>",
    b"\x00\x00\x00\x18ftypqt  \x00\x00\x02\x00qt  ", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", b"",
    b"name\tfold\nada\t1\n", b"%PDF-1.7\n",
])
def test_other_files_have_no_photo_signature(head):
    assert image_signature(head) is None


def test_a_photo_folder_keeps_photos_and_counts_the_rest(tmp_path):
    folder = tmp_path / "Photos"
    (folder / "2024").mkdir(parents=True)
    photo = need(OBAMA)
    shutil.copy(photo, folder / "2024" / "IMG_0001.JPG")
    shutil.copy(photo, folder / "2024" / "IMG_0002")  # a JPEG without a name ending: found by its signature
    (folder / "2024" / "IMG_0001.xmp").write_text("<x:xmpmeta xmlns:x='adobe:ns:meta/'></x:xmpmeta>\n")
    (folder / "2024" / "IMG_0003.MOV").write_bytes(b"\x00\x00\x00\x14ftypqt  " + os.urandom(4000))
    (folder / "2024" / "IMG_0004.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic" + os.urandom(500))
    (folder / "SPLITS.tsv").write_text("name\tfold\n")
    (folder / "README").write_text("family photos\n")
    (folder / "broken.jpg").write_text("a photo that is not one")  # a photo's ending: an unreadable photo
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")  # hidden: not even counted
    found = survey([folder])
    assert [Path(c.path).name for c in found.photos] == ["IMG_0001.JPG", "IMG_0002", "broken.jpg"]
    assert found.skipped == {".xmp": 1, ".mov": 1, ".heic": 1, ".tsv": 1, NO_SUFFIX: 1}
    assert {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".ppm"} <= PHOTO_SUFFIXES


def test_index_reports_skipped_files_apart_from_unreadable_photos(tmp_path):
    folder = tmp_path / "Photos"
    folder.mkdir()
    shutil.copy(need(OBAMA), folder / "obama.jpg")
    (folder / "obama.xmp").write_text("<x:xmpmeta/>\n")
    (folder / "clip.mov").write_bytes(os.urandom(3000))
    (folder / "notes.txt").write_text("holiday\n")
    (folder / "broken.jpg").write_text("not really")
    done = _cli("index", folder, "--out", tmp_path / "photos.idx", home=tmp_path / "home")
    assert done.returncode == 0, done.stderr
    assert "the index holds 2 photos, 1 face, 1 unreadable" in done.stdout
    assert "3 files skipped, not photos: .mov 1, .txt 1, .xmp 1" in done.stdout
    assert done.stdout.count("unreadable: ") == 1 and "broken.jpg: not an image file of an accepted format (JPEG" \
        in done.stdout
    assert "indexing" not in done.stderr and "\r" not in done.stderr  # no progress bar in a log
    manifest = json.loads((tmp_path / "photos.idx" / "manifest.json").read_text())
    assert manifest["counts"]["errors"] == 1 and manifest["runs"][-1]["skipped"] == 3


def test_only_unreadable_files_or_no_photo_at_all_exit_2(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_text("x")
    (bad / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 10)
    line = _one_error_line(_cli("index", bad, "--out", tmp_path / "bad.idx", home=tmp_path / "home"))
    assert line.startswith(f"facetwin: error: {bad}: no photo could be read (2 photos tried; ")
    assert line.endswith(f"all are listed in {tmp_path / 'bad.idx' / 'manifest.json'}.")
    other = tmp_path / "other"
    other.mkdir()
    (other / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(100))
    (other / "SPLITS.tsv").write_text("a\tb\n")
    line = _one_error_line(_cli("index", other, "--out", tmp_path / "none.idx", home=tmp_path / "home"))
    assert line == (f"facetwin: error: {other}: no photos found (2 files skipped, not photos: .mp4 1, .tsv 1); "
                    "accepted formats: JPEG, PNG, WebP, GIF, BMP, TIFF or PPM/PGM.")


def test_index_takes_backbone_and_model_like_other_commands(tmp_path):
    folder = tmp_path / "one"
    folder.mkdir()
    shutil.copy(need(OBAMA), folder / "obama.jpg")
    home = tmp_path / "home"
    done = _cli("index", folder, "--out", tmp_path / "a.idx", "--backbone", "sface", "--json", home=home)
    assert done.returncode == 0 and json.loads(done.stdout)["added_faces"] == 1, done.stderr
    old = _cli("index", folder, "--out", tmp_path / "b.idx", "--model", "sface", "--json", home=home)
    assert old.returncode == 0 and json.loads(old.stdout)["added_faces"] == 1, old.stderr
    assert old.stderr.strip() == ("facetwin index: --model sface is deprecated for a backbone name; use --backbone "
                                  "sface (--model takes a trained run directory, as in every other command).")
    line = _one_error_line(_cli("index", folder, "--out", tmp_path / "c.idx", "--model", tmp_path / "nope",
                                home=home))
    assert "argument --model: " in line and "nope: no such folder" in line
    line = _one_error_line(_cli("index", folder, "--out", tmp_path / "c.idx", "--backbone", "sfase", home=home))
    assert "unknown backbone 'sfase' (did you mean sface?)" in line


def test_gallery_import_prints_a_sentence_and_json_only_when_asked(tmp_path):
    folder = tmp_path / "people"
    for person in ("obama", "biden"):
        shutil.copytree(need(DATA / "face_recognition_examples" / person), folder / person)
    shutil.copy(need(OBAMA), folder / "loose.jpg")
    home = tmp_path / "home"
    assert _cli("index", folder, "--out", tmp_path / "p.idx", home=home).returncode == 0
    gallery = tmp_path / "people.db"
    done = _cli("gallery", "import", tmp_path / "p.idx", "--gallery", gallery, home=home)
    faces = len([p for p in folder.rglob("*.jp*g") if p.parent != folder])
    assert done.stdout == (f"enrolled {faces} faces of 2 people from {tmp_path / 'p.idx'} into {gallery} "
                           "(1 photo outside a person's folder left out)\n"), done.stdout + done.stderr
    again = _cli("gallery", "import", tmp_path / "p.idx", "--gallery", gallery, "--json", home=home)
    assert json.loads(again.stdout) == {"gallery": str(gallery), "people": 0, "enrolled": 0,
                                        "already_enrolled": faces, "unnamed": 1}
