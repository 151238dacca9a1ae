"""io.load_image on odd files: EXIF rotation, gray, RGBA, palette, 16-bit, CMYK, 1x1, broken files, bombs."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from facetwin import FacetwinError
from facetwin.vision.io import MAX_PIXELS, load_image

from conftest import DATA, need


def _save(img: Image.Image, path, **kwargs):
    img.save(path, **kwargs)
    return path


def _assert_rgb(arr: np.ndarray, shape: tuple[int, int]):
    assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape == (*shape, 3)
    assert arr.flags["C_CONTIGUOUS"]


def test_plain_rgb_from_path_and_bytes(tmp_path):
    img = Image.new("RGB", (7, 5), (10, 200, 30))
    path = _save(img, tmp_path / "plain.png")
    arr = load_image(path)
    _assert_rgb(arr, (5, 7))
    assert (arr == [10, 200, 30]).all()
    assert (load_image(path.read_bytes()) == arr).all()
    assert (load_image(str(path)) == arr).all()


@pytest.mark.parametrize("orientation, top_left_color", [(6, "red"), (8, "blue"), (3, "blue")])
def test_exif_orientation_is_applied(tmp_path, orientation, top_left_color):
    # Stored 40 wide x 20 high: red left half, blue right half. Displayed top-left corner comes from the
    # stored bottom-left (6: 90° clockwise), top-right (8: 90° counter-clockwise) or bottom-right (3: 180°).
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (20, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = _save(img, tmp_path / f"rot{orientation}.jpg", exif=exif, quality=95)
    arr = load_image(path).astype(int)
    expected_shape = (40, 20) if orientation in (6, 8) else (20, 40)
    _assert_rgb(arr.astype(np.uint8), expected_shape)
    corner = arr[2:6, 2:6].mean(axis=(0, 1))
    if top_left_color == "red":
        assert corner[0] > 200 and corner[2] < 60
    else:
        assert corner[2] > 200 and corner[0] < 60


def test_exif_rotation_geometry_exact(tmp_path):
    """Orientation 6 (PNG, lossless): displayed image = stored image rotated 90° clockwise."""
    rng = np.random.default_rng(0)
    stored = rng.integers(0, 256, (6, 10, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = _save(Image.fromarray(stored), tmp_path / "rot.png", exif=exif)
    assert (load_image(path) == np.rot90(stored, k=-1)).all()


def test_grayscale_becomes_three_equal_channels(tmp_path):
    gray = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    arr = load_image(_save(Image.fromarray(gray, "L"), tmp_path / "g.png"))
    _assert_rgb(arr, (6, 8))
    assert (arr[..., 0] == gray).all() and (arr[..., 1] == gray).all() and (arr[..., 2] == gray).all()
    one_bit = Image.new("1", (4, 3), 1)
    assert (load_image(_save(one_bit, tmp_path / "b.png")) == 255).all()


def test_rgba_is_composited_on_white(tmp_path):
    img = Image.new("RGBA", (4, 2), (0, 0, 255, 255))
    img.putpixel((0, 0), (255, 0, 0, 0))  # fully transparent red: white background shows
    img.putpixel((1, 0), (0, 0, 0, 128))  # half transparent black: mid gray
    arr = load_image(_save(img, tmp_path / "a.png"))
    _assert_rgb(arr, (2, 4))
    assert (arr[0, 0] == 255).all()
    assert abs(int(arr[0, 1, 0]) - 127) <= 1
    assert (arr[1, 3] == [0, 0, 255]).all()
    la = Image.new("LA", (2, 2), (0, 0))
    assert (load_image(_save(la, tmp_path / "la.png")) == 255).all()


def test_palette_with_and_without_transparency(tmp_path):
    img = Image.new("P", (3, 3), 1)
    img.putpalette([0, 0, 0, 10, 20, 30, 200, 100, 0] + [0] * (256 * 3 - 9))
    img.putpixel((0, 0), 2)
    arr = load_image(_save(img, tmp_path / "p.png"))
    assert (arr[1, 1] == [10, 20, 30]).all() and (arr[0, 0] == [200, 100, 0]).all()
    arr = load_image(_save(img, tmp_path / "pt.png", transparency=2))
    assert (arr[0, 0] == 255).all() and (arr[1, 1] == [10, 20, 30]).all()
    gif = load_image(_save(img, tmp_path / "p.gif"))
    assert (gif[1, 1] == [10, 20, 30]).all()


def test_sixteen_bit_gray_is_scaled(tmp_path):
    data = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    path = tmp_path / "sixteen.png"
    Image.fromarray(data).save(path)
    with Image.open(path) as check:
        assert check.mode.startswith("I")  # really a 16-bit file
    arr = load_image(path)
    _assert_rgb(arr, (1, 4))
    assert arr[0, :, 0].tolist() == [0, 1, 128, 255]
    tiff = tmp_path / "sixteen.tif"
    Image.fromarray(data).save(tiff)
    assert load_image(tiff)[0, :, 0].tolist() == [0, 1, 128, 255]


def test_float_tiff(tmp_path):
    data = np.array([[0.0, 100.5, 300.0]], dtype=np.float32)
    path = _save(Image.fromarray(data, "F"), tmp_path / "f.tif")
    assert load_image(path)[0, :, 0].tolist() == [0, 100, 255]


def test_cmyk_jpeg_is_converted(tmp_path):
    img = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red in CMYK
    arr = load_image(_save(img, tmp_path / "cmyk.jpg", quality=95)).astype(int)
    _assert_rgb(arr.astype(np.uint8), (8, 8))
    assert arr[..., 0].mean() > 230 and arr[..., 1].mean() < 30 and arr[..., 2].mean() < 30
    tif = load_image(_save(img, tmp_path / "cmyk.tif"))
    assert (tif == [255, 0, 0]).all()


def test_lab_tiff_is_converted_colorimetrically(tmp_path):
    # L* 50, a* 0, b* 0 is a mid gray (sRGB about 119); Pillow's plain convert() gave (0, 84, 251) here.
    img = Image.new("LAB", (2, 2), (round(50 * 2.55), 128, 128))
    arr = load_image(_save(img, tmp_path / "lab.tif")).astype(int)
    assert (abs(arr - 119) <= 3).all()


def test_one_pixel(tmp_path):
    arr = load_image(_save(Image.new("RGB", (1, 1), (1, 2, 3)), tmp_path / "one.png"))
    _assert_rgb(arr, (1, 1))
    assert arr[0, 0].tolist() == [1, 2, 3]


def test_truncated_file_is_refused(tmp_path):
    rng = np.random.default_rng(1)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, "JPEG", quality=90)
    data = buffer.getvalue()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FacetwinError, match=r"cut\.jpg: broken or truncated image") as info:
        load_image(path)
    assert "\n" not in str(info.value)
    png = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(png, "PNG")
    with pytest.raises(FacetwinError, match="upload.png: broken or truncated"):
        load_image(png.getvalue()[:300], name="upload.png")


def test_non_images_and_missing_files(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("hello, not a picture\n")
    with pytest.raises(FacetwinError, match=r"notes\.jpg: not an image file"):
        load_image(text)
    with pytest.raises(FacetwinError, match="the uploaded image: not an image file"):
        load_image(b"")
    with pytest.raises(FacetwinError, match=r"absent\.png: no such file"):
        load_image(tmp_path / "absent.png")
    with pytest.raises(FacetwinError, match="is a folder, not a photo"):
        load_image(tmp_path)  # a directory


def test_decompression_bombs_are_refused(tmp_path):
    # Above facetwin's own limit but below Pillow's: refused by the size check before decoding.
    side = int(MAX_PIXELS**0.5) + 100
    path = _save(Image.new("1", (side, side)), tmp_path / "big.png")
    assert path.stat().st_size < 2_000_000  # tiny on disk, huge in memory: a bomb
    with pytest.raises(FacetwinError, match=r"big\.png: image is .* pixels, more than"):
        load_image(path)
    # Far beyond Pillow's limit: Pillow itself refuses to open it.
    huge = _save(Image.new("1", (20_000, 10_000)), tmp_path / "huge.png")
    with pytest.raises(FacetwinError, match=r"huge\.png: image is"):
        load_image(huge.read_bytes(), name="huge.png")


def test_real_odd_files_from_shared_data():
    rgba = need(DATA / "celebrity5" / "ben_afflek" / "httpwwwrumenewscomwpcontentuploadsbenafflekxpng.jpg")
    _assert_rgb(load_image(rgba), (224, 300))  # an RGBA PNG saved with a .jpg name
    gray = need(DATA / "celebrity5" / "madonna" / "httpcdnfuncheapcomwpcontentuploadsVOGUEjpg.jpg")
    arr = load_image(gray)
    _assert_rgb(arr, (218, 218))
    assert (arr[..., 0] == arr[..., 2]).all()
    webp = need(DATA / "deepface_tests" / "id03" / "img47.jpg")  # a WEBP with a .jpg name
    _assert_rgb(load_image(webp), (1800, 1350))


def test_jpegs_decoded_by_opencv_equal_pillows_pixels():
    """Complete upright JPEGs take OpenCV's faster decoder: on real photos (thumbnails, whole web photos, large
    camera photos) the arrays must be exactly Pillow's, and grey JPEGs must stay three equal channels."""
    from PIL import ImageOps

    from facetwin.vision.io import _plain_jpeg, to_rgb

    files = [f for folder in ("lfw-dev/images", "celebrity5", "deepface_tests", "face_recognition_examples")
             for f in sorted(need(DATA / folder).rglob("*.jp*g"))[:60]]
    fast = 0
    for f in files:
        with Image.open(f) as img:
            reference = to_rgb(ImageOps.exif_transpose(img))
            fast += _plain_jpeg(img, f) is not None
        np.testing.assert_array_equal(load_image(f), reference, err_msg=str(f))
        np.testing.assert_array_equal(load_image(f.read_bytes()), reference, err_msg=str(f))
    assert fast > 100  # most of them went through the fast path
    grey = io.BytesIO()
    Image.new("L", (9, 7), 77).save(grey, format="JPEG")
    arr = load_image(grey.getvalue())
    _assert_rgb(arr, (7, 9))
    assert (arr == arr[..., :1]).all()
