"""Model / load / verify / embed on real photos, the SFace backbone, and the `facetwin verify|embed` CLI."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import facetwin
import facetwin.vision.io
from facetwin import FacetwinError
from facetwin.backbones.base import Backbone, Calibration, InputSpec
from facetwin.backbones.sface.backbone import SFace
from facetwin.core import assets
from facetwin.model import Model, Verification, from_backbone

from conftest import DATA, FIXTURES, need

EXAMPLES = DATA / "face_recognition_examples"
OBAMA, OBAMA2 = EXAMPLES / "obama" / "obama.jpg", EXAMPLES / "obama" / "obama2.jpg"
BIDEN = EXAMPLES / "biden" / "biden.jpg"
LFW = DATA / "lfw-dev"


@pytest.fixture(scope="module")
def model() -> Model:
    return facetwin.load("sface")


# ------------------------------------------------------------------ SFace backbone
def test_sface_matches_opencv_dnn_and_batches():
    cv2 = pytest.importorskip("cv2")
    model = facetwin.load("sface", precision="fp32")  # OpenCV's arithmetic; bf16 (the default where the CPU has
    # it) is held within cosine 0.999 of this in tests/test_fast_path.py
    crops = np.stack([model.face_crops(need(p))[0].crop for p in (OBAMA, OBAMA2, BIDEN)])
    batched = model.backbone.trunk(crops)
    single = np.concatenate([model.backbone.trunk(c[None]) for c in crops])
    np.testing.assert_allclose(batched, single, atol=1e-4)
    net = cv2.dnn.readNetFromONNX(str(assets.locate("sface")))  # the original file, as OpenCV runs it
    blob = cv2.dnn.blobFromImage(np.ascontiguousarray(crops[0][..., ::-1]), 1.0, (112, 112), (0, 0, 0), swapRB=True)
    net.setInput(blob, "data")
    np.testing.assert_allclose(net.forward().ravel(), batched[0], atol=1e-3)


def test_sface_head_is_l2_normalisation(model):
    features = np.random.default_rng(0).normal(size=(6, 128)).astype(np.float32)
    out = model.embed_features(features)  # the plain model's head runs in numpy (no torch needed)
    with torch.inference_mode():
        torch_head = model.backbone.pretrained_head()(torch.from_numpy(features)).numpy()
    np.testing.assert_allclose(out, torch_head, atol=1e-6)  # the trainable head starts from the same function
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    # Euclidean on the head output ranks like cosine on the raw features
    eu = np.linalg.norm(out[:3] - out[3:], axis=1)
    cos = model.distances(features[:3], features[3:])
    assert (np.argsort(eu) == np.argsort(cos)).all()
    np.testing.assert_allclose(eu**2, 2 * cos, atol=1e-5)


def test_sface_description_and_calibration(model):
    doc = model.backbone.describe()
    assert doc["name"] == "sface" and doc["weights_sha256"] == assets.ASSETS["sface"].sha256
    assert doc["input"] == {"size": 112, "alignment": "five_point"}
    assert model.distance == "cosine" and 0.3 < model.threshold < 1.0 and model.slope < 0
    assert len(model.fingerprint) == 64 and facetwin.load("sface").fingerprint == model.fingerprint
    with pytest.raises(FacetwinError, match="unknown sface precision"):
        SFace(precision="int8")


# ------------------------------------------------------------------ verification on real photos
def test_same_and_different_people(model):
    same = model.verify(need(OBAMA), need(OBAMA2))
    assert isinstance(same, Verification) and same.same and same.distance <= same.threshold
    assert same.probability > 0.5 and len(same.faces) == 2 and same.faces[0]["file"] == str(OBAMA)
    different = model.verify(OBAMA, need(BIDEN))
    assert not different.same and different.distance > different.threshold and different.probability < 0.5
    json.dumps(same.to_dict())


def test_rolled_face_is_still_the_same_person(model):
    import cv2

    image = facetwin.vision.io.load_image(need(OBAMA))
    h, w = image.shape[:2]
    for angle in (20, -35):
        rolled = cv2.warpAffine(image, cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0), (w, h))
        result = model.verify(image, rolled)
        assert result.same and result.distance < 0.3 * result.threshold


def _pair_accuracy(model, files, labels) -> float:
    batch = model.embed_many(files)
    assert batch.ok.all()
    ok = total = 0
    for i, j in itertools.combinations(range(len(files)), 2):
        d = model.distances(batch.embeddings[i], batch.embeddings[j])[0]
        ok += (d <= model.threshold) == (labels[i] == labels[j])
        total += 1
    return ok / total


@pytest.mark.parametrize("folder, per_person", [("celebrity5", 5), ("face_recognition_examples", 4)])
def test_pairs_of_whole_photos(model, folder, per_person):
    root = need(DATA / folder)
    files, labels = [], []
    for person in sorted(p for p in root.iterdir() if p.is_dir()):
        chosen = sorted(person.iterdir())[:per_person]
        files += chosen
        labels += [person.name] * len(chosen)
    assert _pair_accuracy(model, files, labels) >= 0.95


def test_lfw_pairs(model):
    lines = need(LFW / "pairs.txt").read_text().splitlines()[1:]
    chosen = lines[:12] + lines[300:312]  # fold 1: 12 same-person and 12 different-person pairs
    correct = 0
    for line in chosen:
        parts = line.split()
        if len(parts) == 3:
            a, b, same = (parts[0], int(parts[1])), (parts[0], int(parts[2])), True
        else:
            a, b, same = (parts[0], int(parts[1])), (parts[2], int(parts[3])), False
        pa, pb = (LFW / "images" / n / f"{n}_{i:04d}.jpg" for n, i in (a, b))
        correct += model.verify(pa, pb).same == same
    assert correct >= 23


# ------------------------------------------------------------------ embed / embed_many
def test_embed_shapes_and_norms(model):
    one = model.embed(need(OBAMA))
    assert one.shape == (1, 128) and one.dtype == np.float32
    two = model.embed([OBAMA, OBAMA2.read_bytes()])
    np.testing.assert_allclose(np.linalg.norm(two, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(two[0], one[0], atol=1e-6)


def test_embed_many_reports_failures_and_centre_crops(model, tmp_path):
    need(OBAMA)
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), (90, 90, 90)).save(blank)
    batch = model.embed_many([OBAMA, bad, blank], skip_unreadable=True, batch_size=2)
    assert batch.ok.tolist() == [True, False, True]
    assert np.isnan(batch.embeddings[1]).all() and not np.isnan(batch.embeddings[[0, 2]]).any()
    assert batch.failed[0][0] == str(bad) and str(bad) in batch.failed[0][1]
    assert batch.no_face == [str(blank)]
    with pytest.raises(FacetwinError, match="bad.jpg"):
        model.embed_many([OBAMA, bad])
    with pytest.raises(FacetwinError, match="no face"):
        model.embed([blank])


# ------------------------------------------------------------------ thresholds and loading
class _MeanColour(Backbone):
    """A tiny real backbone (mean colour of quadrants) with no calibration, like vggface here."""

    name = "meancolour"
    input = InputSpec(112, "vggface")
    distance = "euclidean"
    feature_dim = embedding_dim = 12
    calibration = Calibration(float("nan"), float("nan"), float("nan"))

    def trunk(self, crops):
        q = np.asarray(crops, np.float32).reshape(len(crops), 2, 56, 2, 56, 3).mean(axis=(2, 4))
        return q.reshape(len(crops), 12) / 255.0

    def pretrained_head(self):
        return torch.nn.Identity()

    def describe(self):
        return {"name": self.name}


def test_uncalibrated_backbone_needs_a_run_or_threshold():
    plain = from_backbone(_MeanColour())
    with pytest.raises(FacetwinError, match="trained run"):
        plain.verify(need(OBAMA), OBAMA)
    explicit = from_backbone(_MeanColour(), threshold=0.01)
    result = explicit.verify(OBAMA, OBAMA)
    assert result.same and result.distance <= 0.01 and result.to_dict()["probability"] is None
    assert explicit.fingerprint == plain.fingerprint  # the decision rule does not change embeddings


def test_threshold_override_and_bad_names(tmp_path):
    assert facetwin.load("sface", threshold=0.1).threshold == 0.1
    with pytest.raises(FacetwinError, match="unknown backbone"):
        facetwin.load("nosuchnet")
    with pytest.raises(FacetwinError, match="model.json"):
        facetwin.load(tmp_path)


# ------------------------------------------------------------------ CLI
def _cli(*args, home: Path | None = None) -> subprocess.CompletedProcess:
    import os

    env = dict(os.environ)
    if home is not None:
        env["FACETWIN_HOME"] = str(home)
    code = "import sys; from facetwin.cli import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env)


def _one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and re.match(r"facetwin( verify)?: error: ", lines[0]), proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert str(needle) in lines[0]


def test_cli_verify_same_and_json(tmp_path):
    proc = _cli("verify", need(OBAMA), need(OBAMA2))
    assert proc.returncode == 0 and proc.stdout.startswith("same person"), proc.stderr
    assert "threshold" in proc.stdout and "face at" in proc.stdout
    proc = _cli("verify", OBAMA, need(BIDEN), "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["same"] is False and doc["distance"] > doc["threshold"] and 0 <= doc["probability"] < 0.5
    assert [f["file"] for f in doc["faces"]] == [str(OBAMA), str(BIDEN)]


def test_cli_verify_errors_are_one_line(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("hello")
    _one_line_error(_cli("verify", need(OBAMA), text), text)
    blank = tmp_path / "blank.png"
    Image.new("RGB", (64, 64), (0, 0, 0)).save(blank)
    _one_line_error(_cli("verify", blank, OBAMA), blank, "no face")
    proc = _cli("verify", blank, OBAMA, "--no-face", "center", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["faces"][0]["note"].startswith("no face found")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(OBAMA.read_bytes()[:2000])
    _one_line_error(_cli("verify", OBAMA, truncated), truncated)
    _one_line_error(_cli("verify", OBAMA, tmp_path / "missing.jpg"), "missing.jpg")
    _one_line_error(_cli("verify", OBAMA, OBAMA2, "--model", tmp_path), "model.json")


def test_cli_vggface_without_weights_or_threshold(tmp_path):
    _one_line_error(_cli("verify", need(OBAMA), OBAMA2, "--backbone", "vggface", home=tmp_path / "empty"))
    _one_line_error(_cli("embed", OBAMA, "--layer", "fc7"), "vggface")


def test_cli_embed_json_and_npy(tmp_path):
    out = tmp_path / "e.npy"
    group = need(DATA / "deepface_tests" / "id02" / "img54.jpg")
    proc = _cli("embed", need(OBAMA), group, "--all-faces", "--json", "--out", out)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert {"backbone", "layer", "embeddings", "files", "faces"} <= set(doc)
    assert doc["backbone"] == "sface" and doc["files"][0] == str(OBAMA) and doc["files"].count(str(group)) >= 2
    saved = np.load(out)
    assert saved.shape == (len(doc["files"]), 128)
    np.testing.assert_allclose(saved, np.array(doc["embeddings"]), atol=1e-6)
    proc = _cli("embed", OBAMA, "--no-detect")
    assert proc.returncode == 0 and "whole image" in proc.stdout


@pytest.mark.skipif(not (FIXTURES / "vggface-keras" / "vggface_keras_legacy.h5").exists(), reason="fixture absent")
def test_cli_vggface_fixture_needs_threshold(tmp_path):
    home = tmp_path / "home"
    fixture = FIXTURES / "vggface-keras" / "vggface_keras_legacy.h5"
    assert _cli("weights", "import", "vggface", fixture, home=home).returncode == 0
    _one_line_error(_cli("verify", need(OBAMA), OBAMA2, "--backbone", "vggface", home=home), "threshold")
    proc = _cli("verify", OBAMA, OBAMA2, "--backbone", "vggface", "--threshold", "5", "--json", home=home)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["distance_kind"] == "euclidean" and doc["threshold"] == 5.0 and doc["probability"] is None
