"""Decoding and fitting single images: shared by the folder loader, prediction and serving.

Every image that enters cnnkit from a file or a request goes through ``decode_image`` (which
refuses anything that is not a complete, reasonably sized image with a one-line reason) and then
``fit_image`` (which turns it into the uint8 (C, S, S) array the models eat).
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cnnkit.data.dicom import looks_like_dicom
from cnnkit.errors import CnnkitError

DEFAULT_MAX_PIXELS = 50_000_000
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
# Modes whose alpha (or palette/colour-key transparency) must be composited before dropping it.
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_SIXTEEN_BIT = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
# Only these decoders see untrusted bytes (EPS, for one, would run Ghostscript). The JPEG
# decoder also opens the MPO files of many phone cameras (their img.format is "MPO").
FORMATS = ("PNG", "JPEG", "BMP", "WEBP", "GIF", "TIFF")


class ImageDecodeError(CnnkitError):
    """An input that is not a usable image; ``reason`` says why without the file name."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class ImageTooLarge(ImageDecodeError):
    """An image refused for its size (over the pixel limit, or a decompression bomb): the
    server answers these with 413, other decode errors with 422."""


@dataclass(frozen=True)
class DecodedImage:
    """A fully loaded image, plus the mode and size of the file as stored (for the doctor).

    ``size`` is (width, height) after EXIF orientation but before any draft reduction, i.e. the
    size a person opening the file sees.
    """

    image: Image.Image
    mode: str
    size: tuple[int, int]


def mode_channels(mode: str) -> int:
    """1 for the gray PIL modes, 3 for everything else (palette, RGB, CMYK, ...)."""
    return 1 if mode in GRAY_MODES else 3


def image_channels(img: Image.Image) -> int:
    """1 if ``img`` is a gray image (modes 1, L, LA, I, I;16, F), else 3."""
    return mode_channels(img.mode)


def _source_label(src: bytes | str | Path) -> str:
    return "image data" if isinstance(src, (bytes, bytearray, memoryview)) else str(src)


def _open(src: bytes | str | Path, label: str) -> Image.Image:
    """Open lazily (header only), turning every way of failing into an ImageDecodeError."""
    try:
        if isinstance(src, (bytes, bytearray, memoryview)):
            if len(src) == 0:
                raise ImageDecodeError(label, "empty input (0 bytes)")
            return Image.open(io.BytesIO(bytes(src)), formats=FORMATS)
        path = Path(src)
        if path.is_file() and path.stat().st_size == 0:
            raise ImageDecodeError(label, "empty file (0 bytes)")
        return Image.open(path, formats=FORMATS)
    except FileNotFoundError:
        raise ImageDecodeError(label, "file not found") from None
    except IsADirectoryError:
        raise ImageDecodeError(label, "is a directory, not an image file") from None
    except UnidentifiedImageError:
        raise ImageDecodeError(label, "not a PNG, JPEG, BMP, WebP, GIF or TIFF image") from None
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(label, f"refused as a decompression bomb ({exc})") from None
    except OSError as exc:
        if exc.errno is not None:  # the file system's error (permissions, I/O), not the data's
            raise ImageDecodeError(label, f"cannot be read ({exc.strerror})") from None
        raise ImageDecodeError(label, f"corrupt or truncated image header ({exc})") from None
    except (EOFError, ValueError, SyntaxError) as exc:
        raise ImageDecodeError(label, f"corrupt or truncated image header ({exc})") from None


def _oriented(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a broken EXIF block costs the rotation, not the image."""
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - metadata parsing of untrusted files can fail in many ways
        return img.copy()


def read_image(
    src: bytes | str | Path, max_pixels: int = DEFAULT_MAX_PIXELS, target_size: int | None = None
) -> DecodedImage:
    """Decode ``src`` fully, with EXIF orientation applied; see ``decode_image``."""
    label = _source_label(src)
    if looks_like_dicom(src):
        from cnnkit.data.dicom import read_dicom

        return DecodedImage(*read_dicom(src, label, max_pixels))
    with _open(src, label) as img:
        width, height = img.size
        if width * height > max_pixels:
            raise ImageTooLarge(
                label, f"{width}x{height} is {width * height:,} pixels, over the limit of {max_pixels:,} "
                "(decompression bomb?)"
            )
        mode, fmt = img.mode, img.format or "image"
        if target_size and fmt in ("JPEG", "MPO"):
            # DCT-domain downscaling by 1/2, 1/4 or 1/8 while keeping both sides >= target_size:
            # a 3024x3024 photo decodes in ~20 ms instead of ~300 ms, and fit_image still
            # antialiases the rest of the way down.
            img.draft(img.mode, (target_size, target_size))
        try:
            img.load()  # decode now, so truncated or corrupt data fails here and not later
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - decoders of untrusted data raise many types
            raise ImageDecodeError(label, f"corrupt or truncated {fmt} data ({exc})") from None
        out = _oriented(img)
        # EXIF orientations 5-8 turn the picture by 90 degrees: report the size as displayed.
        swapped = out.size != img.size and out.size == img.size[::-1]
    return DecodedImage(out, mode, (height, width) if swapped else (width, height))


def decode_image(
    src: bytes | str | Path, max_pixels: int = DEFAULT_MAX_PIXELS, target_size: int | None = None
) -> Image.Image:
    """Open PNG/JPEG/BMP/WebP/GIF (first frame)/TIFF from a path or bytes, fully loaded.

    EXIF orientation is applied. Empty, corrupt, truncated or non-image input, and images of
    more than ``max_pixels`` pixels, raise a CnnkitError (an ImageDecodeError) that says what is
    wrong. ``target_size`` lets large JPEGs decode at a reduced size that is still at least
    ``target_size`` on both sides (only worth passing when the image will be shrunk to it).
    Pillow's own guard (twice ``Image.MAX_IMAGE_PIXELS``) still applies; this never changes that
    process-wide setting.
    """
    return read_image(src, max_pixels, target_size).image


def _to_8bit(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit gray to 8-bit L by scaling the value range, not by clipping at 255."""
    arr = np.asarray(img)
    if img.mode in _SIXTEEN_BIT:
        scaled = arr.astype(np.float32) / 257.0
    elif img.mode == "F":
        # Float images are 0..1 by convention, unless the values say they are 0..255.
        scaled = arr * 255.0 if np.nanmax(arr, initial=0.0) <= 1.0 else arr
    elif arr.max(initial=0) > 255:  # mode "I": 32-bit ints, in practice 16-bit data
        scaled = arr.astype(np.float32) / 257.0
    else:
        scaled = arr
    clean = np.nan_to_num(np.asarray(scaled, dtype=np.float32), nan=0.0)
    return Image.fromarray(np.clip(np.rint(clean), 0, 255).astype(np.uint8), "L")


def _flatten(img: Image.Image) -> Image.Image:
    """Any mode to L or RGB; transparency is composited on white (what a viewer shows)."""
    if img.mode in _SIXTEEN_BIT or img.mode in ("I", "F"):
        return _to_8bit(img)
    has_alpha = img.mode in _ALPHA_MODES or "transparency" in img.info
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        flat = Image.alpha_composite(white, rgba).convert("RGB")
        return flat.convert("L") if mode_channels(img.mode) == 1 else flat
    if img.mode in ("L", "RGB"):
        return img
    return img.convert("L" if mode_channels(img.mode) == 1 else "RGB")


def fit_image(img: Image.Image, image_size: int, channels: int) -> np.ndarray:
    """Return uint8 (channels, image_size, image_size): shorter side resized, then centre-cropped.

    Why resize-then-centre-crop (torchvision's Resize + CenterCrop) and not stretching or
    padding: stretching changes the shapes the network learns, padding adds borders that real
    inputs do not have, and photos for classification usually have their subject in the middle.
    The crop is done as the ``box`` of one bilinear, antialiased resize (Pillow's resize filters
    scale with the reduction), which is the same thing in a single pass.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    flat = _flatten(img).convert("L" if channels == 1 else "RGB")
    width, height = flat.size
    side = min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    box = (left, top, left + side, top + side)
    resized = flat.resize((image_size, image_size), Image.Resampling.BILINEAR, box=box)
    arr = np.asarray(resized, dtype=np.uint8)
    arr = arr[None] if channels == 1 else arr.transpose(2, 0, 1)
    return np.ascontiguousarray(arr)
