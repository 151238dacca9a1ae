"""The fast photo pipeline (YuNet in onnxruntime, SFace folded and PRelu split) against the reference path.

Reference: OpenCV's ``cv2.FaceDetectorYN`` on the shipped YuNet file for detection, and the shipped int8 SFace
graph run as it is (only repaired, no folding or rewriting) for the features. On real photos the fast path
must find the same faces and give embeddings within cosine 0.999 of the reference (in practice > 0.99999);
so must bf16 (OpenVINO; the default on CPUs with native bfloat16), when this machine has it.
"""

from __future__ import annotations

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import DATA, need

PHOTOS = 40  # per folder: lfw-dev thumbnails and celebrity5 whole photos


def _photos():
    folders = [need(DATA / "lfw-dev" / "images"), need(DATA / "celebrity5")]
    return [f for folder in folders for f in sorted(folder.rglob("*.jpg"))[:PHOTOS]]


@pytest.fixture(scope="module")
def photos():
    return _photos()


def _reference_detect(rgb: np.ndarray) -> np.ndarray:
    from facetwin.core import assets
    from facetwin.vision.detect import NMS_THRESHOLD, SCORE_THRESHOLD, TOP_K

    det = cv2.FaceDetectorYN.create(
        str(assets.locate("yunet")), "", (rgb.shape[1], rgb.shape[0]), SCORE_THRESHOLD, NMS_THRESHOLD, TOP_K
    )
    _, found = det.detect(np.ascontiguousarray(rgb[..., ::-1]))
    return np.zeros((0, 15), np.float32) if found is None else found


def test_yunet_in_onnxruntime_finds_what_opencv_finds(photos):
    from facetwin.vision import yunet
    from facetwin.vision.detect import NMS_THRESHOLD, SCORE_THRESHOLD, TOP_K
    from facetwin.vision.io import load_image

    faces = 0
    for f in photos:
        rgb = load_image(f)
        ours = yunet.detect(rgb, SCORE_THRESHOLD, NMS_THRESHOLD, TOP_K)
        ref = _reference_detect(rgb)
        assert ours.shape == ref.shape, f
        if len(ref):
            assert np.abs(ours - ref).max() < 1e-2, f  # pixels and score
        faces += len(ref)
    assert faces >= len(photos)


def test_fast_embeddings_match_the_original_graph_on_real_photos(photos):
    import onnxruntime as ort

    import facetwin
    from facetwin.core import assets
    from facetwin.core.onnx_graph import fixed_model
    from facetwin.vision.align import align
    from facetwin.vision.detect import Face
    from facetwin.vision.io import load_image

    model = facetwin.load("sface")
    original = ort.InferenceSession(
        fixed_model(assets.read_verified("sface")).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    cosines = []
    for f in photos:
        rgb = load_image(f)
        found = _reference_detect(rgb)
        row = found[np.argmax(found[:, 2] * found[:, 3])]  # the largest face, as facetwin picks it
        face = Face(tuple(float(v) for v in row[:4]), row[4:14].reshape(5, 2).astype(np.float64), float(row[14]))
        crop = align(rgb, face, "five_point", 112)
        ref = original.run(None, {"data": crop.transpose(2, 0, 1)[None].astype(np.float32)})[0][0]
        ours = model.embed([str(f)])[0]
        cosines.append(float(ours @ ref / np.linalg.norm(ref)))
    assert min(cosines) >= 0.999, f"lowest cosine {min(cosines):.6f}"


def test_bf16_embeddings_stay_within_cosine_0999_of_fp32(photos):
    import facetwin
    from facetwin.core.precision import openvino_bf16

    if not openvino_bf16():
        pytest.skip("OpenVINO is not installed or this CPU has no native bfloat16")
    fp32, bf16 = facetwin.load("sface", precision="fp32"), facetwin.load("sface", precision="bf16")
    assert bf16.backbone.describe()["runtime"].startswith("openvino bf16")
    # the same network: one fingerprint (galleries accept either), two feature caches
    assert bf16.fingerprint == fp32.fingerprint and bf16.backbone.describe() != fp32.backbone.describe()
    crops = np.stack([fp32.face_crops(str(f))[0].crop for f in photos])
    a, b = fp32.embed_crops(crops), bf16.embed_crops(crops)
    np.testing.assert_allclose(bf16.embed_crops(crops[:1]), b[:1], atol=1e-3)  # batch 1 = batched
    assert float((a * b).sum(axis=1).min()) >= 0.999


def test_fp32_in_openvino_equals_onnxruntime_and_fingerprints_keep_the_earlier_name(photos):
    import hashlib

    import facetwin
    from facetwin.backbones.sface import backbone as sface
    from facetwin.core import assets
    from facetwin.core.jsonsafe import canonical_json

    model = facetwin.load("sface", precision="fp32")
    crops = np.stack([model.face_crops(str(f))[0].crop for f in photos[::4]])
    blob = np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32)
    data = assets.read_verified("sface")
    a = sface._openvino(data, 2, "fp32")(blob)
    b = sface._onnxruntime(data, 2)(blob)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert float(cos.min()) >= 0.99999
    # what an earlier release (onnxruntime fp32 only) recorded gives the same fingerprint: its galleries still load
    earlier = {**model.description, "backbone": {**model.description["backbone"],
                                                 "runtime": "onnxruntime fp32 (dequantised weights folded)"}}
    assert hashlib.sha256(canonical_json(earlier).encode()).hexdigest() == model.fingerprint
    assert facetwin.load("sface").fingerprint == model.fingerprint  # auto (bf16 where the CPU has it) too


def test_openvino_start_up_cache_is_written_once_and_optional(facetwin_home, photos, monkeypatch):
    """The folded graph is kept in $FACETWIN_HOME/compiled (OpenVINO's compiled blob beside it); a home that
    cannot be written still gives the same features, folded in memory."""
    from facetwin.backbones.sface import backbone as sface
    from facetwin.vision.io import load_image

    if not sface.has_openvino():
        pytest.skip("OpenVINO is not installed")
    import facetwin

    crops = np.stack([facetwin.load("sface").face_crops(load_image(f))[0].crop for f in photos[:6]])
    first = sface.SFace(precision="fp32").trunk(crops)
    (folded,) = (facetwin_home / "compiled").glob("sface-*-folded.onnx")
    assert any((facetwin_home / "compiled" / "openvino").iterdir())
    stamp = folded.stat().st_mtime_ns
    np.testing.assert_array_equal(sface.SFace(precision="fp32").trunk(crops), first)  # from the caches
    assert folded.stat().st_mtime_ns == stamp
    monkeypatch.setenv("FACETWIN_HOME", str(folded))  # a file, not a folder: nothing can be written under it
    np.testing.assert_allclose(sface.SFace(precision="fp32").trunk(crops), first, atol=1e-5)


OPENVINO_FORKS = r"""
import os, sys, time
forks = []
os.register_at_fork(before=lambda: forks.append(1))
from facetwin.core.runtimes import openvino
openvino().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
time.sleep(1.0)  # the telemetry sends from a thread pool: give it the time it would take
from openvino.tools.ovc import telemetry_utils
print(len(forks), telemetry_utils.tm.__name__, "openvino_telemetry" in sys.modules)
"""


def test_openvino_is_imported_without_its_telemetry(tmp_path):
    """Imported plainly, OpenVINO reports the import to Google Analytics from a forked process, unless the user
    opted out (a file in ``~/intel``). facetwin sends nothing: with a home that has no opt-out file, importing it
    through facetwin forks nothing and leaves OpenVINO's no-op stub in place, and the user's own imports are as
    before."""
    pytest.importorskip("openvino", reason="OpenVINO is not installed")
    done = subprocess.run([sys.executable, "-c", OPENVINO_FORKS], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["0", "openvino.tools.ovc.telemetry_stub", "False"], done.stdout
    assert not (tmp_path / "intel").exists()  # no consent file or client id written either
