"""The dlib backbone against the real dlib (``dlib-bin``, dev extra) on real faces from ../shared/data.

Skips with a reason when dlib, the face-recognition-models wheel or the shared data is absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from facetwin.errors import FacetwinError

from conftest import DATA, need

LFW = DATA / "lfw-dev" / "images"
LFW_FILES = [  # the first two show one person, the others six different people
    "Andre_Agassi/Andre_Agassi_0001.jpg",
    "Andre_Agassi/Andre_Agassi_0002.jpg",
    "Abdullah_Gul/Abdullah_Gul_0001.jpg",
    "Adrien_Brody/Adrien_Brody_0001.jpg",
    "Aaron_Sorkin/Aaron_Sorkin_0001.jpg",
    "Adam_Sandler/Adam_Sandler_0001.jpg",
    "Abel_Pacheco/Abel_Pacheco_0001.jpg",
    "Abdoulaye_Wade/Abdoulaye_Wade_0001.jpg",
]


def _dat() -> Path:
    from facetwin.backbones.dlib.weights import find_dat

    try:
        return find_dat()
    except FacetwinError as exc:
        pytest.skip(f"the face-recognition-models wheel is not installed ({exc})")


@pytest.fixture(scope="module")
def dlib_models():
    """The real dlib: face detector, 5-point shape model, face recognition network."""
    dlib = pytest.importorskip("dlib", reason="the real dlib is not installed (pip install dlib-bin, dev extra)")
    dat = _dat()
    predictor = dlib.shape_predictor(str(dat.parent / "shape_predictor_5_face_landmarks.dat"))
    return dlib, dlib.get_frontal_face_detector(), predictor, dlib.face_recognition_model_v1(str(dat))


@pytest.fixture(scope="module")
def lfw_faces(dlib_models):
    """(RGB image, dlib's 5-point detection) of real LFW photos."""
    from facetwin.vision.io import load_image

    dlib, detector, predictor, _ = dlib_models
    faces = []
    for name in LFW_FILES:
        rgb = load_image(need(LFW / name))
        boxes = detector(rgb, 1)
        assert len(boxes), name
        faces.append((rgb, predictor(rgb, boxes[0])))
    return faces


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    """The dlib backbone, its weights converted into a private FACETWIN_HOME."""
    _dat()
    from facetwin.backbones import get_backbone

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FACETWIN_HOME", str(tmp_path_factory.mktemp("home")))
        yield get_backbone("dlib")


def test_descriptors_match_dlib_on_its_own_chips(dlib_models, lfw_faces, backbone):
    dlib, _, _, reference = dlib_models
    chips = np.stack([dlib.get_face_chip(rgb, shape, 150, 0.25) for rgb, shape in lfw_faces])
    expected = np.stack([np.array(reference.compute_face_descriptor(chip)) for chip in chips])
    batched = backbone.trunk(chips)
    one_by_one = np.concatenate([backbone.trunk(chip) for chip in chips])
    assert np.abs(batched - expected).max() <= 1e-4
    assert np.abs(one_by_one - expected).max() <= 1e-4
    # dlib's own rule on its descriptors: the two photos of Andre Agassi are one person, the others are not
    distances = np.linalg.norm(batched[0] - batched[1:], axis=1)
    assert distances[0] < 0.6 < distances[1:].min()


def test_chip_matches_dlib_get_face_chip(dlib_models, lfw_faces):
    from facetwin.vision.dlib_chip import DLIB_TEMPLATE, face_chip

    dlib = dlib_models[0]
    for rgb, shape in lfw_faces:
        points = np.array([[p.x, p.y] for p in shape.parts()], float)
        expected = dlib.get_face_chip(rgb, shape, 150, 0.25)
        assert np.array_equal(face_chip(rgb, points, DLIB_TEMPLATE), expected)


def test_large_photo_chip_is_close_to_dlib(dlib_models):
    """Faces larger than twice the chip go through an image pyramid (cv2.pyrDown here, dlib's own there)."""
    from facetwin.vision.dlib_chip import DLIB_TEMPLATE, face_chip
    from facetwin.vision.io import load_image

    dlib, detector, predictor, _ = dlib_models
    rgb = load_image(need(DATA / "face_recognition_examples" / "obama" / "obama.jpg"))
    shape = predictor(rgb, max(detector(rgb, 0), key=lambda b: b.area()))
    points = np.array([[p.x, p.y] for p in shape.parts()], float)
    ours = face_chip(rgb, points, DLIB_TEMPLATE).astype(int)
    assert np.abs(ours - dlib.get_face_chip(rgb, shape, 150, 0.25)).mean() < 4


def test_weights_are_cached_as_safetensors_and_checked(backbone, tmp_path):
    from safetensors import safe_open

    from facetwin.backbones.dlib import weights as W
    from facetwin.core import paths

    cache = paths.home() / "weights" / W.CACHE_FILE
    with safe_open(str(cache), framework="pt") as handle:
        assert handle.metadata()["source_sha256"] == W.MODEL_SHA256 == backbone.weights_sha256
    again = W.load()  # from the cache
    for key, value in backbone.network.state_dict().items():
        assert torch.equal(again.state_dict[key], value), key
    data = W.find_dat().read_bytes()
    with pytest.raises(W.DatError, match="unexpected end of file"):
        W.parse(data[: len(data) // 2])
    other = tmp_path / W.MODEL_FILE
    other.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(FacetwinError, match=r"pip install -e '\.\[dlib\]'"):
        W.load(other)


def test_backbone_on_facetwin_chips(backbone):
    from facetwin.vision.faces import face_crops

    crops = [face_crops(str(need(LFW / name)), backbone.input)[0].crop for name in LFW_FILES[:3]]
    assert crops[0].shape == (150, 150, 3)
    e = backbone.embed(np.stack(crops))
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert 1 - e[0] @ e[1] < backbone.calibration.threshold < 1 - e[0] @ e[2]


def test_network_is_trainable(backbone):
    from facetwin.backbones.dlib.backbone import DlibResNet

    net = DlibResNet()
    net.load_state_dict(backbone.network.state_dict())
    for param in net.stages[4].parameters():
        param.requires_grad_(True)
    out = net(torch.rand(2, 3, 150, 150) * 255)
    out.pow(2).sum().backward()
    assert out.shape == (2, 128)
    assert net.stages[4][0].conv1.weight.grad is not None


def test_missing_wheel_is_one_clear_sentence(tmp_path):
    """A real environment without face-recognition-models: site-packages minus that wheel, seen through symlinks."""
    import subprocess
    import sys
    import sysconfig

    site = Path(sysconfig.get_paths()["purelib"])
    if not (site / "face_recognition_models").exists():
        pytest.skip("face-recognition-models is not installed in this environment's site-packages")
    view = tmp_path / "site"
    view.mkdir()
    for entry in site.iterdir():
        if not entry.name.lower().startswith("face_recognition_models"):
            (view / entry.name).symlink_to(entry)
    src = Path(__file__).resolve().parents[1] / "src"
    image = need(LFW / LFW_FILES[0])
    env = {"PYTHONPATH": f"{src}:{view}", "FACETWIN_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    run = subprocess.run(
        [sys.executable, "-S", "-m", "facetwin.cli", "embed", str(image), "--backbone", "dlib"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install -e '.[dlib]'" in lines[0], run.stderr


def test_bf16_stays_within_cosine_1e4_of_fp32(lfw_faces, dlib_models, backbone):
    from facetwin.backbones import get_backbone

    dlib = dlib_models[0]
    chips = np.stack([dlib.get_face_chip(rgb, shape, 150, 0.25) for rgb, shape in lfw_faces])
    exact, low = backbone.embed(chips), get_backbone("dlib", precision="bf16").embed(chips)
    assert np.sum(exact * low, axis=1).min() >= 0.9999
