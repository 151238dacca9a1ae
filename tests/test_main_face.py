"""The main face of a photo (``--face main``, the default) against the largest, everywhere one face is taken."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from facetwin import FacetwinError
from facetwin.vision.detect import Face
from facetwin.vision.prominence import prominence, rank_faces

from conftest import DATA, need

LFW = DATA / "lfw-dev" / "images"
# A 250x250 LFW photo of Silvio Berlusconi with a bystander cut by the left edge whose box is larger than his.
CROWDED = "Silvio_Berlusconi/Silvio_Berlusconi_0030.jpg"
ALONE = "Silvio_Berlusconi/Silvio_Berlusconi_0001.jpg"
CLI = [sys.executable, "-c", "import sys; from facetwin.cli import main; sys.exit(main(sys.argv[1:]))"]


def _face(x, y, w, h, score=0.9) -> Face:
    return Face((x, y, w, h), np.zeros((5, 2)), score)


def test_a_centred_face_beats_a_larger_one_at_the_edge():
    centred, edge = _face(85, 80, 80, 100), _face(0, 60, 100, 130)
    assert rank_faces([edge, centred], 250, 250, "main")[0] is centred
    assert rank_faces([centred, edge], 250, 250, "largest")[0] is edge


def test_an_off_centre_subject_beats_a_small_central_bystander():
    subject, bystander = _face(71, 22, 39, 55), _face(191, 69, 31, 41)  # as in a celebrity5 photo, 300x300
    assert rank_faces([bystander, subject], 300, 300, "main")[0] is subject


def test_the_part_outside_the_frame_does_not_count():
    inside, cut = _face(100, 100, 50, 50), _face(-100, 100, 150, 50)
    assert prominence(cut, 400, 300) < prominence(_face(0, 100, 50, 50), 400, 300) + 1e-9
    assert rank_faces([cut, inside], 400, 300)[0] is inside


def test_unknown_rule_is_one_sentence():
    with pytest.raises(FacetwinError, match="unknown face rule 'biggest'; choose one of: main, largest"):
        rank_faces([], 10, 10, "biggest")


def _distance_to_alone(model, face):
    a = model.embed(str(LFW / CROWDED), face=face)
    b = model.embed(str(LFW / ALONE))
    return float(model.distances(a, b)[0])


def test_main_face_is_the_named_person_in_a_real_crowded_photo(model):
    need(LFW / CROWDED)
    main = model.face_crops(str(LFW / CROWDED))[0]
    largest = model.face_crops(str(LFW / CROWDED), face="largest")[0]
    assert main.faces_found == largest.faces_found == 2
    assert main.face.box != largest.face.box and largest.face.area > main.face.area
    assert _distance_to_alone(model, "main") < model.threshold < _distance_to_alone(model, "largest")


def test_verify_json_and_line_say_how_many_faces_and_which(model, facetwin_home):
    need(LFW / CROWDED)
    env = {"FACETWIN_HOME": str(facetwin_home), "PATH": ""}
    args = ["verify", str(LFW / CROWDED), str(LFW / ALONE)]
    def run(*extra: str) -> str:
        return subprocess.run([*CLI, *args, *extra], capture_output=True, text=True, env=env, check=True).stdout

    doc = json.loads(run("--json"))
    crowded, alone = doc["faces"]
    assert (crowded["faces_found"], crowded["face_rule"], alone["faces_found"]) == (2, "main", 1)
    assert doc["same"] is True
    assert crowded["box"] == [round(v, 1) for v in model.face_crops(str(LFW / CROWDED))[0].face.box]
    largest = json.loads(run("--json", "--face", "largest"))
    assert largest["same"] is False and largest["faces"][0]["face_rule"] == "largest"
    text = run()
    assert "the main one of 2 found" in text and "the only face found" in text


def test_feature_cache_and_evaluation_record_the_rule(model, tmp_path):
    from facetwin.training.features import cache_key, extract_features

    need(LFW / CROWDED)
    assert cache_key(model.backbone, face="main") != cache_key(model.backbone, face="largest")
    files = [LFW / CROWDED, LFW / ALONE]
    main = extract_features(model.backbone, files, progress=False)
    largest = extract_features(model.backbone, files, progress=False, face="largest")
    assert list(main.faces_found) == [2, 1] and not np.allclose(main.features[0], largest.features[0])
    again = extract_features(model.backbone, files, progress=False)  # from the cache, faces found included
    assert again.cached == 2 and list(again.faces_found) == [2, 1]
    assert np.array_equal(again.features, main.features)
