"""Several trunks as one model (``sface+dlib``) and mirror averaging (``--tta flip``), end to end on real faces."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA, need

if importlib.util.find_spec("face_recognition_models") is None:  # importing it needs pkg_resources: only find it
    pytest.skip("the dlib backbone needs the face-recognition-models wheel", allow_module_level=True)

OBAMA = DATA / "face_recognition_examples" / "obama"
BIDEN = DATA / "face_recognition_examples" / "biden"


def test_pack_and_unpack_are_inverse():
    from facetwin.vision.align import InputSpec, pack, unpack

    parts = (InputSpec(4, "five_point"), InputSpec(3, "dlib"))
    rng = np.random.default_rng(0)
    crops = [[rng.integers(0, 255, (p.size, p.size, 3), dtype=np.uint8) for p in parts] for _ in range(2)]
    batch = np.stack([pack(c) for c in crops])
    for k, view in enumerate(unpack(batch, parts)):
        np.testing.assert_array_equal(view, np.stack([c[k] for c in crops]))


def test_flip_averaging_is_mirror_symmetric_and_recorded():
    import facetwin

    need(OBAMA)
    plain, flip = facetwin.load("sface"), facetwin.load("sface", tta="flip")
    crop = flip.face_crops(OBAMA / "obama.jpg")[0].crop
    a, b = flip.embed_crops(crop), flip.embed_crops(crop[:, ::-1])
    np.testing.assert_allclose(a, b, atol=1e-5)  # a face and its mirror image get the same embedding
    assert not np.allclose(plain.embed_crops(crop), plain.embed_crops(crop[:, ::-1]), atol=1e-3)
    assert flip.source == "sface:flip" and flip.fingerprint != plain.fingerprint
    assert flip.backbone.describe()["tta"] == "flip"


def test_composite_is_the_mean_of_its_parts_and_matches_the_cache(facetwin_home):
    import facetwin
    from facetwin.training.features import extract_features

    files = [need(OBAMA / "obama.jpg"), OBAMA / "obama2.jpg", BIDEN / "biden.jpg"]
    both = facetwin.load("sface+dlib", threshold=0.3)
    sface, dlib = facetwin.load("sface"), facetwin.load("dlib", threshold=0.3)
    e = both.embed(files)
    assert e.shape == (3, 256) and both.source == "sface+dlib"
    d_both = both.distances(e[:1], e[1:])
    d_parts = sface.distances(*np.split(sface.embed(files), [1])) + dlib.distances(*np.split(dlib.embed(files), [1]))
    np.testing.assert_allclose(d_both, d_parts / 2, atol=1e-5)  # cosine of unit halves = mean of the cosines
    fs = extract_features(both.backbone, files, progress=False)  # through each part's own cache
    np.testing.assert_allclose(both.embed_features(fs.features), e, atol=1e-5)
    again = extract_features(facetwin.load("sface").backbone, files, progress=False)
    assert again.computed == 0 and again.cached == 3  # sface's cache was filled by the composite


def test_gallery_and_training_understand_a_composite_with_flip(facetwin_home, tmp_path):
    import facetwin
    from facetwin.gallery import Gallery

    need(OBAMA)
    gallery = Gallery(tmp_path / "g.db", "sface+dlib:flip")
    gallery.enroll("Barack Obama", [OBAMA / "obama.jpg", OBAMA / "obama2.jpg"])
    reopened = Gallery(tmp_path / "g.db")  # the recorded source rebuilds the same composite with flip
    assert reopened.model.fingerprint == gallery.model.fingerprint
    att = need(DATA / "att_faces")
    data = tmp_path / "people"
    for k in range(1, 7):
        (data / f"s{k}").mkdir(parents=True)
        for f in sorted((att / f"s{k}").iterdir())[:5]:
            (data / f"s{k}" / f.name).symlink_to(f)
    run = tmp_path / "run"
    facetwin.train(data, run, backbone="sface+dlib", tta="flip", epochs=2, progress=False)
    doc = json.loads(Path(run / "model.json").read_text())
    assert doc["backbone"]["name"] == "sface+dlib" and doc["backbone"]["options"]["tta"] == "flip"
    model = facetwin.load(run)
    assert model.backbone.source == "sface+dlib:flip" and model.embed(att / "s1" / "1.pgm").shape == (1, 256)
    assert (
        model.verify(att / "s2" / "1.pgm", att / "s2" / "2.pgm").distance
        < model.verify(att / "s2" / "1.pgm", att / "s3" / "1.pgm").distance
    )


def test_a_composite_model_indexes_and_finds(tmp_path):
    import facetwin

    folder = tmp_path / "photos"
    for person in ("obama", "biden"):
        (folder / person).mkdir(parents=True)
        for f in sorted(need(DATA / "face_recognition_examples" / person).iterdir())[:2]:
            (folder / person / f.name).symlink_to(f)
    out = tmp_path / "index"
    summary = facetwin.index([folder], out, model="sface+dlib:flip", engine="local", progress=False)
    assert summary.added_faces >= 4
    hits = facetwin.find(OBAMA / "obama.jpg", out).hits
    assert hits and {Path(h.path).parent.name for h in hits} == {"obama"}
