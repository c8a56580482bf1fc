"""DICOM images (``.dcm``, or bytes with the ``DICM`` preamble) decoded to 8-bit pictures.

What a radiologist's viewer shows, not the raw numbers: the modality rescale (slope/intercept)
first, then the file's display window (WindowCenter/WindowWidth, DICOM's linear VOI function),
else the image's own min-max range; MONOCHROME1 (where bright means low) is inverted so bone is
white as in MONOCHROME2. Multi-frame files give their first frame. Files without pixel data,
and compressed ones whose decoder is not installed, raise an ImageDecodeError (the same "bad
image" every reader of cnnkit reports, the dataset doctor included). Needs ``cnnkit[dicom]``.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cnnkit.errors import CnnkitError

EXTENSIONS = frozenset({".dcm", ".dicom"})
_MAGIC_AT, _MAGIC = 128, b"DICM"


def looks_like_dicom(src: bytes | str | Path) -> bool:
    """A path ending in .dcm, or bytes (or a file) carrying DICOM's preamble magic."""
    if isinstance(src, (bytes, bytearray, memoryview)):
        return bytes(src[_MAGIC_AT:_MAGIC_AT + 4]) == _MAGIC
    path = Path(src)
    if path.suffix:  # a named image format (.png ...) is never sniffed: that would open every file twice
        return path.suffix.lower() in EXTENSIONS
    try:
        with open(path, "rb") as fh:
            fh.seek(_MAGIC_AT)
            return fh.read(4) == _MAGIC
    except OSError:
        return False


def _pydicom() -> Any:
    try:
        import pydicom
    except ImportError:
        raise CnnkitError('DICOM images need pydicom: pip install "cnnkit[dicom]"') from None
    return pydicom


def _first(value: Any) -> float:
    """WindowCenter/Width may hold several windows; the first is the default one."""
    if isinstance(value, (list, tuple)) or (hasattr(value, "__len__") and not isinstance(value, (str, bytes))):
        value = value[0]
    return float(value)


def window(values: np.ndarray, center: float | None, width: float | None) -> np.ndarray:
    """Float pixel values -> uint8: DICOM's linear window (PS3.3 C.11.2.1.2) if given, else min-max."""
    values = values.astype(np.float64)
    if center is not None and width is not None and width >= 1:
        scaled = ((values - (center - 0.5)) / (width - 1) + 0.5) * 255.0
    else:
        low, high = float(np.min(values)), float(np.max(values))
        scaled = (values - low) / (high - low) * 255.0 if high > low else np.zeros_like(values)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _pixels(ds: Any, label: str) -> np.ndarray:
    from cnnkit.data.imageio import ImageDecodeError

    if "PixelData" not in ds:
        raise ImageDecodeError(label, "DICOM file has no pixel data (a report or structured document?)")
    try:
        return np.asarray(ds.pixel_array)
    except Exception as exc:  # noqa: BLE001 - pydicom's decoders raise RuntimeError, NotImplementedError, ValueError...
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", None) or str(syntax or "unknown")
        if syntax is not None and getattr(syntax, "is_compressed", False):
            raise ImageDecodeError(label, f"compressed DICOM ({name}) with no decoder installed; install pylibjpeg "
                                          "or GDCM for it") from None
        raise ImageDecodeError(label, f"corrupt DICOM pixel data ({type(exc).__name__}: {exc})") from None


def _to_picture(ds: Any, arr: np.ndarray) -> Image.Image:
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper()
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    if frames > 1:
        arr = arr[0]
    if samples == 3:  # colour (ultrasound, photos): already display values
        rgb = arr if arr.dtype == np.uint8 else window(arr, None, None)
        if photometric.startswith("YBR"):
            from pydicom.pixels import convert_color_space

            rgb = convert_color_space(rgb, photometric, "RGB")
        return Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    slope, intercept = float(getattr(ds, "RescaleSlope", 1) or 1), float(getattr(ds, "RescaleIntercept", 0) or 0)
    values = arr.astype(np.float64) * slope + intercept
    center = _first(ds.WindowCenter) if "WindowCenter" in ds else None
    width = _first(ds.WindowWidth) if "WindowWidth" in ds else None
    gray = window(values, center, width)
    if photometric == "MONOCHROME1":
        gray = 255 - gray
    return Image.fromarray(np.ascontiguousarray(gray), "L")


def read_dicom(src: bytes | str | Path, label: str, max_pixels: int) -> tuple[Image.Image, str, tuple[int, int]]:
    """(8-bit picture, its mode (L or RGB), (width, height)) of a DICOM file or bytes."""
    from cnnkit.data.imageio import ImageDecodeError

    pydicom = _pydicom()
    try:
        handle = io.BytesIO(bytes(src)) if isinstance(src, (bytes, bytearray, memoryview)) else str(src)
        ds = pydicom.dcmread(handle)
    except FileNotFoundError:
        raise ImageDecodeError(label, "file not found") from None
    except Exception as exc:  # noqa: BLE001 - malformed files raise many types
        raise ImageDecodeError(label, f"not a readable DICOM file ({type(exc).__name__}: {exc})") from None
    rows, cols = int(getattr(ds, "Rows", 0) or 0), int(getattr(ds, "Columns", 0) or 0)
    if rows * cols > max_pixels:
        raise ImageDecodeError(label, f"{cols}x{rows} is {rows * cols:,} pixels, over the limit of {max_pixels:,}")
    picture = _to_picture(ds, _pixels(ds, label))
    return picture, picture.mode, picture.size
