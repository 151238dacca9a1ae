"""End to end on real faces (AT&T subset, sface): cached trunk, run directory, load_run, kill + resume, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import DATA, need


def _subset(tmp_path: Path, people: int = 6, per_person: int = 6, broken: bool = False) -> Path:
    """A folder-per-person set of symlinks to AT&T images (no data copied)."""
    src = need(DATA / "att_faces")
    root = tmp_path / "data"
    for k in range(1, people + 1):
        person = root / f"s{k}"
        person.mkdir(parents=True)
        for f in sorted((src / f"s{k}").iterdir())[:per_person]:
            (person / f.name).symlink_to(f)
    if broken:
        (root / "s1" / "broken.jpg").write_bytes(b"this is not a jpeg")
    return root


@pytest.fixture
def data_dir(tmp_path):
    return _subset(tmp_path, broken=True)


def test_train_writes_a_run_and_second_run_uses_the_cache(data_dir, tmp_path, facetwin_home, monkeypatch):
    import facetwin
    from facetwin.backbones.sface.backbone import SFace
    from facetwin.loading import load

    run = tmp_path / "run"
    summary = facetwin.train(data_dir, run, backbone="sface", preset="paper", epochs=2, progress=False)
    assert summary["data"]["unreadable"] == 1 and "broken.jpg" in summary["data"]["unreadable_first"][0]
    assert summary["data"]["images"] == 36
    for name in ("model.json", "head.safetensors", "metrics.json", "curves.png", "checkpoint.pt"):
        assert (run / name).is_file(), name
    doc = json.loads((run / "model.json").read_text())
    hp = doc["hyperparameters"]
    assert doc["preset"] == "paper"
    assert (hp["lr"], hp["batch_size"], hp["optimizer"], hp["loss"], hp["pairs"]) == (1e-3, 32, "adam", "bce", "fixed")
    assert doc["head"]["distance"] == "euclidean"
    assert doc["threshold"]["used"] in ("validation_best_accuracy", "logistic")
    assert doc["threshold"]["value"] == doc["threshold"][doc["threshold"]["used"]]
    assert doc["backbone"]["describe"]["name"] == "sface"
    metrics = json.loads((run / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [0, 1, 2]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(metrics["epochs"][2])
    assert "val_auc" in metrics["final"] and "val_accuracy" in metrics["final"]
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Second run on the same images: the trunk must not run at all.
    calls = []
    original = SFace.trunk

    def counting(self, crops):
        calls.append(len(crops))
        return original(self, crops)

    monkeypatch.setattr(SFace, "trunk", counting)
    again = facetwin.train(data_dir, tmp_path / "run2", backbone="sface", epochs=1, progress=False)
    assert calls == []
    assert again["data"]["extraction"]["computed"] == 0 and again["data"]["extraction"]["cached"] == 36

    # The run directory loads as a Model whose head and decision rule are the trained ones.
    model = load(run)
    assert model.distance == "euclidean"
    assert model.threshold == pytest.approx(doc["threshold"]["value"])
    assert model.slope == pytest.approx(doc["head"]["logistic"]["slope"]) and model.slope < 0
    same = sorted((data_dir / "s2").glob("*.pgm"))[:2]
    other = sorted((data_dir / "s3").glob("*.pgm"))[0]
    e = model.embed([str(same[0]), str(same[1]), str(other)], no_face="center")
    assert e.shape == (3, doc["head"]["output_dim"])
    d_same = float(np.linalg.norm(e[0] - e[1]))
    d_diff = float(np.linalg.norm(e[0] - e[2]))
    assert d_same < d_diff


def test_train_refuses_to_overwrite_and_reports_bad_options(data_dir, tmp_path, facetwin_home):
    import facetwin
    from facetwin.errors import FacetwinError

    run = tmp_path / "run"
    facetwin.train(data_dir, run, epochs=1, progress=False)
    with pytest.raises(FacetwinError, match="already holds"):
        facetwin.train(data_dir, run, epochs=1, progress=False)
    with pytest.raises(FacetwinError, match="split"):
        facetwin.train(data_dir, tmp_path / "x", split="random", progress=False)
    with pytest.raises(FacetwinError, match="not a directory"):
        facetwin.train(tmp_path / "nowhere", tmp_path / "y", progress=False)


def test_kill_after_a_checkpoint_then_resume(tmp_path, facetwin_home):
    data = _subset(tmp_path, people=5, per_person=4)
    run = tmp_path / "run"
    env = dict(os.environ, FACETWIN_HOME=str(facetwin_home))
    code = "import sys; from facetwin.cli import main; sys.exit(main())"
    cmd = [sys.executable, "-c", code, "train", str(data), "--out", str(run), "--epochs", "1000000", "--quiet"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = run / "checkpoint.pt"
    try:
        deadline = time.time() + 240
        epoch = 0
        while time.time() < deadline and proc.poll() is None:
            if ckpt.exists():
                epoch = int(torch.load(ckpt, weights_only=True)["epoch"])
                if epoch >= 3:
                    break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read().decode()
        assert epoch >= 3, "no checkpoint appeared in time"
    finally:
        proc.kill()
        proc.wait()
    state = torch.load(ckpt, weights_only=True)  # the file is whole: writes are atomic
    done = int(state["epoch"])
    before = json.loads(state["history"])
    assert not (run / "model.json").exists()

    import facetwin

    facetwin.train(data, run, epochs=done + 2, resume=True, progress=False)
    metrics = json.loads((run / "metrics.json").read_text())
    epochs = metrics["epochs"]
    assert [e["epoch"] for e in epochs] == list(range(done + 3))
    assert epochs[: done + 1] == before  # the killed run's epochs are kept, not redone
    assert json.loads((run / "model.json").read_text())["training"]["epochs_run"] == done + 2


def test_cli_train_help_and_error(tmp_path, facetwin_home):
    from facetwin.cli import main

    assert main(["train", "--help"]) == 0
    assert main(["train", str(tmp_path / "missing"), "--out", str(tmp_path / "run")]) == 2
