"""Reading images from disk or bytes into RGB uint8 arrays, refusing what is not a sane image."""

from __future__ import annotations

import io as _io
import re
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facetwin.errors import FacetwinError

MAX_PIXELS = 80_000_000  # larger than any camera photo; beyond this we treat the file as a decompression bomb
# Photo formats only (anything else is "not an image file"): never EPS/PS, which Pillow would hand to Ghostscript.
EXIF_ORIENTATION = 0x0112
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "PPM")
ACCEPTED = "JPEG, PNG, WebP, GIF, BMP, TIFF or PPM/PGM"  # FORMATS as a reader says them
# The file name endings of FORMATS (Pillow's registered extensions of those plugins, and .dib for BMP).
PHOTO_SUFFIXES = frozenset((
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".webp", ".gif", ".bmp", ".dib", ".tif", ".tiff",
    ".ppm", ".pgm", ".pbm", ".pnm",
))
SIGNATURE_BYTES = 32  # enough of a file's start for every signature below
_BMP_HEADER_SIZES = (12, 16, 40, 52, 56, 64, 108, 124)  # the DIB header sizes that follow "BM" in real bitmaps
_NETPBM = re.compile(rb"P[1-6]\s+(#[^\n]*\n\s*)*\d")  # magic number, then (after comments) the width


def image_signature(head: bytes) -> str | None:
    """The format of :data:`FORMATS` whose signature (magic bytes) starts ``head``, else None.

    Stricter than Pillow's own checks where those are two bytes long (BMP's ``BM``, PPM's ``P``), so that a text
    file that happens to start with ``BM`` or ``P6`` is not taken for a photo."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WEBP"
    if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return "TIFF"
    if head.startswith(b"BM") and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES:
        return "BMP"
    if _NETPBM.match(head):
        return "PPM"
    return None


def _open(stream, label: str) -> Image.Image:
    """``Image.open`` restricted to :data:`FORMATS`: a file of any other format is "not an image"."""
    return Image.open(stream, formats=FORMATS)


def image_size(data: bytes, name: str | None = None) -> tuple[int, int]:
    """``(width, height)`` from the header of an image in ``data`` (nothing is decoded); FacetwinError if it is
    not an image of an accepted format."""
    label = name or "the uploaded image"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with _open(_io.BytesIO(data), label) as img:
                return img.size
    except FacetwinError:
        raise
    except Image.DecompressionBombError:
        raise FacetwinError(f"{label}: image is too large to decode safely (decompression bomb).") from None
    except UnidentifiedImageError:
        raise FacetwinError(_not_an_image(label)) from None
    except Exception as exc:  # noqa: BLE001 - a hostile header may break a plugin in any way
        raise FacetwinError(f"{label}: broken image header ({type(exc).__name__}).") from None


def load_image(
    source: str | Path | bytes, name: str | None = None, *, max_pixels: int = MAX_PIXELS,
    reduce_to: tuple[int, int] | None = None,
) -> np.ndarray:
    """Decode a file path or raw bytes into an ``(H, W, 3)`` RGB uint8 array.

    EXIF orientation is applied; grayscale, RGBA, palette, 16-bit and CMYK images are converted.
    Anything that is not a decodable image (of :data:`FORMATS`) of at most ``max_pixels`` raises
    :class:`FacetwinError` naming the file. ``reduce_to`` (width, height): a JPEG is decoded at 1/2, 1/4 or 1/8
    scale, the smallest still at least that size (Pillow's draft mode: a 64-megapixel photo then costs one), and
    ``max_pixels`` applies to what is decoded; other formats are decoded whole.
    """
    label = name or (str(source) if not isinstance(source, bytes) else "the uploaded image")
    if isinstance(source, bytes):
        stream: _io.BytesIO | str = _io.BytesIO(source)
    else:
        path = Path(source)
        if path.is_dir():
            raise FacetwinError(f"{label}: is a folder, not a photo.")
        if not path.is_file():
            raise FacetwinError(f"{label}: no such file.")
        stream = str(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with _open(stream, label) as img:
                if reduce_to is not None:
                    img.draft(None, reduce_to)
                width, height = img.size
                if width * height > max_pixels:
                    raise FacetwinError(
                        f"{label}: image is {width}×{height} pixels, more than the {max_pixels:,} allowed."
                    )
                fast = None if reduce_to else _plain_jpeg(img, source if isinstance(source, bytes) else path)
                if fast is not None:
                    return fast
                img.load()
                img = ImageOps.exif_transpose(img)
                return to_rgb(img)
    except FacetwinError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise FacetwinError(f"{label}: image is too large to decode safely (decompression bomb).") from None
    except UnidentifiedImageError:
        raise FacetwinError(_not_an_image(label)) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise FacetwinError(f"{label}: broken or truncated image ({exc}).") from None
    except Exception as exc:  # noqa: BLE001 - a hostile file may break a decoder plugin in any way
        raise FacetwinError(f"{label}: broken image ({type(exc).__name__} while decoding).") from None


def _not_an_image(label: str) -> str:
    return f"{label}: not an image file of an accepted format ({ACCEPTED})."


def _plain_jpeg(img: Image.Image, source: bytes | Path) -> np.ndarray | None:
    """The pixels of a complete, upright RGB or grey JPEG, decoded by OpenCV (the same libjpeg-turbo arithmetic:
    identical arrays, in 60 % of Pillow's time); None for anything else, which Pillow decodes (and reports)."""
    if img.format != "JPEG" or img.mode not in ("RGB", "L") or img.getexif().get(EXIF_ORIENTATION, 1) != 1:
        return None
    data = np.frombuffer(source, np.uint8) if isinstance(source, bytes) else np.fromfile(source, np.uint8)
    if data[-2:].tobytes() != b"\xff\xd9":  # truncated (or trailing bytes): Pillow decides
        return None
    rgb = cv2.imdecode(data, cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION)
    return rgb if rgb is not None and rgb.shape[:2] == (img.height, img.width) else None


def to_rgb(img: Image.Image) -> np.ndarray:
    """Convert any Pillow mode to RGB uint8, scaling 16-bit and 32-bit data down to 8 bits."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        data = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or data.max() > 255 else 255.0
        gray = np.clip(data / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode == "F":
        data = np.asarray(img, dtype=np.float64)
        gray = np.clip(data, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode == "LAB":  # Pillow's plain convert() copies L*a*b* channels as if they were RGB
        from PIL import ImageCms

        transform = ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB")
        return np.ascontiguousarray(np.asarray(ImageCms.applyTransform(img, transform), dtype=np.uint8))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))
