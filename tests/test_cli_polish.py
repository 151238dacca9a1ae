"""The first hour of a new user: errors first and short, checks before loading, one gallery, no dead-end advice."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from facetwin.core.distances import paired
from facetwin.core.text import count

from conftest import DATA, need

OBAMA = DATA / "face_recognition_examples" / "obama"


def _run(*args, home=None, **kwargs) -> subprocess.CompletedProcess:
    env = None if home is None else {**os.environ, "FACETWIN_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "facetwin.cli", *map(str, args)], capture_output=True, text=True, env=env, **kwargs
    )


def _error_line(done) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def test_version():
    done = _run("--version")
    assert done.returncode == 0 and done.stdout.startswith("facetwin 0.")


def test_a_misspelt_option_names_the_command_and_suggests():
    photo = need(OBAMA / "obama.jpg")
    line = _error_line(_run("verify", photo, photo, "--fcae"))
    assert line.startswith("facetwin verify: error: unrecognized arguments: --fcae (did you mean --face?)")
    assert "usage: facetwin verify IMAGE_A IMAGE_B [options]" in line


def test_a_missing_option_is_said_first_in_one_line():
    line = _error_line(_run("evaluate"))
    assert line.startswith("facetwin evaluate: error: the following arguments are required: PAIRS_FILE, --images")
    assert line.endswith("(`facetwin evaluate --help` lists every option)")
    line = _error_line(_run("weights"))
    assert "required: ACTION (one of: list, fetch, import)" in line
    line = _error_line(_run("gallery"))
    assert "required: ACTION (one of: list, remove, stats, import); usage: facetwin gallery ACTION [PERSON] [options]" \
        in line


def test_names_and_paths_are_checked_before_anything_heavy_is_imported(tmp_path):
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("1\t1\n")
    code = (
        "import sys; from facetwin.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('onnxruntime', 'openvino', 'torch') if m in sys.modules))"
    )
    for args, needle in (
        (["evaluate", pairs, "--images", tmp_path, "--backbone", "sfce"], "backbone 'sfce' (did you mean sface?)"),
        (["evaluate", tmp_path / "nope.txt", "--images", tmp_path], "nope.txt: no such file"),
        (["train", tmp_path / "people", "--out", tmp_path / "run"], "people: no such folder"),
        (["verify", tmp_path, tmp_path], "is a folder, not a photo"),
    ):
        done = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True)
        assert needle in done.stderr and done.stderr.count("\n") == 1, done.stderr
        assert done.stdout.strip().splitlines()[-1] == "[]", (args, done.stdout)


def test_no_face_advice_names_only_options_the_command_has(tmp_path):
    blank = tmp_path / "wall.png"
    Image.new("RGB", (64, 64), (90, 90, 90)).save(blank)
    verify = _error_line(_run("verify", blank, need(OBAMA / "obama.jpg"), home=tmp_path / "home"))
    assert "wall.png: no face found" in verify and "--no-face center" in verify
    identify = _error_line(_run("identify", blank, "--gallery", tmp_path / "g.db", home=tmp_path / "home"))
    assert "--no-face" not in identify


def test_counts_read_like_english():
    assert [count(1, "fold"), count(5, "fold"), count(1, "person"), count(2, "person"), count(1200, "pair")] == [
        "1 fold", "5 folds", "1 person", "2 people", "1,200 pairs"]


def test_a_distance_is_never_negative():
    v = np.random.default_rng(0).standard_normal((50, 512)).astype(np.float32)
    assert (paired(v, v, "cosine") >= 0).all() and f"{paired(v, v, 'cosine').min():.4f}" == "0.0000"


def test_one_default_gallery_for_cli_and_service_and_duplicates_are_skipped(tmp_path, monkeypatch):
    from facetwin.gallery.location import model_gallery
    from facetwin.loading import load

    photo = need(OBAMA / "obama.jpg")
    home = tmp_path / "home"
    first = _run("enroll", "Barack Obama", photo, home=home)
    assert first.returncode == 0, first.stderr
    default = home / "galleries" / "sface.db"
    assert str(default) in first.stdout and default.is_file()
    again = _run("enroll", "Barack Obama", photo, OBAMA / "obama2.jpg", home=home)
    assert again.returncode == 0 and "enrolled 1 photo of Barack Obama" in again.stdout
    assert "1 photo already enrolled for Barack Obama: skipped" in again.stdout
    listing = _run("gallery", "list", home=home)
    assert listing.stdout.strip() == "Barack Obama\t2 embeddings", listing.stdout + listing.stderr
    who = _run("identify", OBAMA / "obama2.jpg", "--json", home=home)
    assert json.loads(who.stdout)["person"] == "Barack Obama"
    monkeypatch.setenv("FACETWIN_HOME", str(home))
    assert model_gallery(load("sface")) == default  # what `facetwin serve` opens without --gallery
    stats = _run("gallery", "stats", home=home)
    assert stats.stdout.startswith(f"{default}: 1 person, 2 embeddings, model sface"), stats.stdout


def test_a_gallery_named_by_fingerprint_by_an_earlier_serve_is_renamed_not_lost(tmp_path, facetwin_home):
    from facetwin.gallery import Gallery
    from facetwin.gallery.location import model_gallery
    from facetwin.loading import load

    model = load("sface")
    old = facetwin_home / "galleries" / f"{model.fingerprint[:16]}.db"
    old.parent.mkdir(parents=True)
    Gallery(old, model).enroll_embeddings("Ada", np.ones((1, 128), np.float32))
    path = model_gallery(model)
    assert path.name == "sface.db" and not old.exists()
    people = Gallery(path, model).people()
    assert [p.name for p in people] == ["Ada"]
    assert people[0].enrolled_at.endswith("+00:00") and people[0].enrolled_at[:2] == "20"
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM embeddings").fetchone() == (1,)


def test_export_takes_out_like_every_other_command_and_says_so_to_old_hands(tmp_path):
    line = _error_line(_run("export", "sface", "--onnx", tmp_path / "m.onnx"))
    assert line.startswith("facetwin export: error: the following arguments are required: --out (--onnx is now --out)")
    assert "usage: facetwin export RUN_DIR|BACKBONE --out OUT.onnx [options]" in line


def test_cluster_names_what_it_needs():
    line = _error_line(_run("cluster"))
    assert line.startswith("facetwin cluster: error: the following arguments are required: INDEX_DIR; usage: "
                           "facetwin cluster INDEX_DIR [--min-faces K]")
    assert "ARG" not in line and "facetwin cluster name INDEX_DIR CLUSTER_ID NAME" in line


def test_identify_has_the_api_defaults_and_ranges_and_says_them(tmp_path):
    import inspect

    from facetwin.cli import build_parser
    from facetwin.gallery import Gallery
    from facetwin.gallery.results import IDENTIFY_TOP_K, MAX_IDENTIFY_TOP_K

    assert (IDENTIFY_TOP_K, MAX_IDENTIFY_TOP_K) == (3, 100)
    assert inspect.signature(Gallery.identify).parameters["top_k"].default == IDENTIFY_TOP_K
    photo = need(OBAMA / "obama.jpg")
    assert build_parser().parse_args(["identify", str(photo)]).top_k == IDENTIFY_TOP_K
    assert "(1-100, default 3)" in " ".join(_run("identify", "--help").stdout.split())
    for wrong in ("0", "101"):
        line = _error_line(_run("identify", photo, "--top-k", wrong, "--gallery", tmp_path / "g.db",
                                home=tmp_path / "home"))
        assert line == f"facetwin: error: --top-k must be a whole number from 1 to 100, got {wrong}."


@pytest.mark.parametrize(("people", "words"), [(3, "only 1 person validates"), (6, "only 2 people validate")])
def test_a_few_validation_people_are_warned_about_in_words(caplog, people, words):
    from facetwin.training.config import TrainConfig
    from facetwin.training.pairs import PairPlan

    with caplog.at_level("WARNING", logger="facetwin"):
        PairPlan(np.repeat(np.arange(people), 3), TrainConfig(val_fraction=0.2, keep="best"))
    assert f"{words}: the kept epoch and the threshold rest on their few pairs" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="facetwin"):
        PairPlan(np.repeat(np.arange(60), 3), TrainConfig(val_fraction=0.2, keep="best"))
    assert "validate" not in caplog.text


def test_a_run_without_shared_says_what_skips_in_one_line(monkeypatch, tmp_path):
    import conftest

    monkeypatch.setattr(conftest, "SHARED", tmp_path / "shared")
    monkeypatch.setattr(conftest, "DATA", tmp_path / "shared" / "data")
    line = conftest.missing_shared_note()
    assert "\n" not in line and line.startswith(f"facetwin: {tmp_path / 'shared'} is absent, so the tests")
    assert "skip" in line and "shared/data" in line and "shared/weights" in line
