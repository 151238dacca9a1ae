"""Damaged state on disk: feature cache, checkpoints, run directories and galleries give one sentence or are
recomputed; nothing non-finite is saved; a file that is not a facetwin gallery is never written to."""

from __future__ import annotations

import hashlib
import io
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from facetwin.errors import FacetwinError
from facetwin.gallery import Gallery

from conftest import DATA, need

ATT = DATA / "att_faces"


def _cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "facetwin.cli", *map(str, args)], capture_output=True, text=True, env=env
    )


def _one_line_error(done) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("facetwin: error: ") and "Traceback" not in done.stderr, lines
    return lines[0]


def _subset(root: Path, people: int = 4, per_person: int = 5) -> Path:
    src = need(ATT)
    for k in range(1, people + 1):
        (root / f"s{k}").mkdir(parents=True)
        for f in sorted((src / f"s{k}").iterdir())[:per_person]:
            (root / f"s{k}" / f.name).symlink_to(f)
    return root


# ---------------------------------------------------------------------------- feature cache


def test_damaged_cache_entries_are_recomputed(tmp_path, facetwin_home):
    from facetwin.backbones.registry import make_backbone
    from facetwin.training.features import _entry_path, cache_dir, extract_features

    backbone = make_backbone("sface")
    files = sorted(need(ATT / "s1").iterdir())[:4]
    first = extract_features(backbone, files, progress=False)
    assert first.computed == 4
    entries = [_entry_path(cache_dir(backbone), hashlib.sha256(f.read_bytes()).hexdigest()) for f in files]
    entries[0].write_bytes(entries[0].read_bytes()[:40])  # truncated zip: BadZipFile
    buffer = io.BytesIO()
    np.savez(buffer, feature=np.full(backbone.feature_dim, np.nan, np.float32), note=np.array("detected"))
    entries[1].write_bytes(buffer.getvalue())  # NaN: would train a head of NaNs
    buffer = io.BytesIO()
    np.savez(buffer, feature=np.zeros(3, np.float32), note=np.array("detected"))
    entries[2].write_bytes(buffer.getvalue())  # wrong shape
    again = extract_features(backbone, files, progress=False)
    assert again.computed == 3 and again.cached == 1
    assert np.isfinite(again.features).all()
    np.testing.assert_allclose(again.features, first.features, rtol=1e-5, atol=1e-6)


def test_training_on_a_poisoned_cache_gives_a_finite_model(tmp_path, facetwin_home):
    import facetwin
    from facetwin.backbones.registry import make_backbone
    from facetwin.training.features import cache_dir

    data = _subset(tmp_path / "data")
    facetwin.train(data, tmp_path / "warm", backbone="sface", epochs=1, progress=False)
    for entry in cache_dir(make_backbone("sface")).rglob("*.npz"):  # every entry NaN
        buffer = io.BytesIO()
        with np.load(entry) as saved:
            np.savez(buffer, feature=np.full_like(saved["feature"], np.nan), note=saved["note"])
        entry.write_bytes(buffer.getvalue())
    facetwin.train(data, tmp_path / "run", backbone="sface", epochs=2, progress=False)
    model = facetwin.load(tmp_path / "run")
    files = sorted((data / "s1").iterdir())
    result = model.verify(files[0], files[1])
    assert np.isfinite(result.distance)


def test_a_non_finite_model_is_never_saved_nor_loaded(tmp_path, facetwin_home):
    from safetensors.torch import load_file, save_file

    import facetwin
    from facetwin.training import checkpoint as ckpt_io

    data = _subset(tmp_path / "data")
    run = tmp_path / "run"
    facetwin.train(data, run, backbone="sface", epochs=1, progress=False)
    state = load_file(str(run / "head.safetensors"))
    key = next(iter(state))
    state[key] = torch.full_like(state[key], float("nan"))
    save_file(state, str(run / "head.safetensors"))
    with pytest.raises(FacetwinError, match="holds NaN or infinite values; this model cannot be used"):
        facetwin.load(run)
    bad = ckpt_io.Checkpoint(3, state, {}, [], {"epoch": 0, "auc": 0.5, "state": state}, 1.0, torch.get_rng_state())
    with pytest.raises(FacetwinError, match="training diverged after epoch 3"):
        ckpt_io.save(tmp_path / "c.pt", None, bad)
    assert not (tmp_path / "c.pt").exists()


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "missing-keys", "nan"])
def test_damaged_checkpoints_are_refused_in_one_sentence(tmp_path, damage):
    from facetwin.training import checkpoint as ckpt_io
    from facetwin.training.config import TrainConfig

    path = tmp_path / "checkpoint.pt"
    good = {"epoch": 1, "model": {"w": torch.ones(3)}, "optimizer": {}, "history": "[]", "best_epoch": 0,
            "best_auc": 0.5, "best_model": {"w": torch.ones(3)}, "margin": 1.0, "torch_rng": torch.get_rng_state(),
            "config": "{}"}
    buffer = io.BytesIO()
    if damage == "missing-keys":
        torch.save({"epoch": 1}, buffer)
    elif damage == "nan":
        torch.save({**good, "model": {"w": torch.tensor([float("nan")])}}, buffer)
    else:
        torch.save(good, buffer)
    data = {"truncated": buffer.getvalue()[:100], "garbage": b"\x00junk" * 50, "empty": b""}.get(
        damage, buffer.getvalue()
    )
    path.write_bytes(data)
    with pytest.raises(FacetwinError, match=r"checkpoint\.pt: .*(checkpoint|tensor)") as caught:
        ckpt_io.load(path, TrainConfig(backbone="sface").resolved())
    assert "\n" not in str(caught.value)


def test_train_into_a_run_with_a_checkpoint_asks_resume_or_overwrite(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"from an earlier run")
    line = _one_line_error(_cli("train", tmp_path, "--out", out))
    assert "--resume" in line and "--overwrite" in line
    assert (out / "checkpoint.pt").read_bytes() == b"from an earlier run"
    line = _one_line_error(_cli("train", tmp_path, "--out", out, "--resume"))
    assert "checkpoint.pt: not a readable training checkpoint" in line or "no " in line


# ---------------------------------------------------------------------------- galleries


def test_another_applications_sqlite_file_is_never_written(tmp_path):
    app = tmp_path / "app.db"
    with sqlite3.connect(app) as con:
        con.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
        con.execute("INSERT INTO users(email) VALUES ('a@example.org')")
    con.close()
    before = app.read_bytes()
    with pytest.raises(FacetwinError, match=r"app\.db: not a facetwin gallery .*left untouched"):
        Gallery(app)
    line = _one_line_error(_cli("enroll", "Ada", need(ATT / "s1" / "1.pgm"), "--gallery", app))
    assert "not a facetwin gallery" in line
    assert app.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.db"]  # no -wal, no -shm: never switched to WAL
    text = tmp_path / "notes.db"
    text.write_text("my notes, not a database\n" * 10)
    line = _one_line_error(_cli("gallery", "list", "--gallery", text))
    assert "notes.db: not a facetwin gallery" in line
    assert text.read_text() == "my notes, not a database\n" * 10


def test_a_damaged_gallery_gives_one_sentence_in_every_command(tmp_path):
    db = tmp_path / "g.db"
    gallery = Gallery(db)
    rng = np.random.default_rng(0)
    gallery.enroll_many({f"person{i:04d}": rng.standard_normal((3, 128)).astype(np.float32) for i in range(300)})
    del gallery
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything into the main file
    con.close()
    data = bytearray(db.read_bytes())
    page = 4096
    for start in range(page, len(data), page):  # scribble over the header of every page but the first
        data[start : start + 64] = b"\xa5" * 64
    db.write_bytes(bytes(data))
    for args in (("gallery", "list"), ("gallery", "stats"), ("gallery", "remove", "person0001"),
                 ("identify", need(ATT / "s1" / "1.pgm"))):
        line = _one_line_error(_cli(*args, "--gallery", db))
        assert "g.db" in line, (args, line)


def test_a_tampered_hnsw_index_is_rebuilt_not_trusted(tmp_path, model):
    import faiss

    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((50, 128)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    gallery = Gallery(tmp_path / "g.db", model, index_threshold=40)
    gallery.enroll_many({f"p{i}": vectors[i : i + 1] for i in range(50)})
    assert gallery.search(vectors[7], top_k=1).person == "p7"
    fake = faiss.IndexHNSWFlat(128, 32, faiss.METRIC_INNER_PRODUCT)  # same size, other vectors: a poisoned file
    fake.add(np.roll(vectors, 1, axis=0))
    faiss.write_index(fake, str(tmp_path / "g.db.hnsw"))
    fresh = Gallery(tmp_path / "g.db", model, index_threshold=40)
    assert fresh.search(vectors[7], top_k=1).matches[0].person == "p7"


@pytest.mark.parametrize("damage", ["{}", '{"format": "facetwin-run"}', "[1, 2]", "not json",
                                    '{"format": "facetwin-run", "hyperparameters": {"head": "evil"}, '
                                    '"backbone": {"name": "sface", "options": {}, "describe": {}}, "head": {}, '
                                    '"threshold": {"value": "x"}}'])
def test_a_damaged_model_json_is_one_sentence(tmp_path, damage):
    import facetwin

    run = tmp_path / "run"
    run.mkdir()
    (run / "model.json").write_text(damage)
    with pytest.raises(FacetwinError, match=r"model\.json: ") as caught:
        facetwin.load(run)
    assert "\n" not in str(caught.value)
