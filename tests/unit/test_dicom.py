"""DICOM decoding (files written by pydicom itself): window, min-max, MONOCHROME1, missing pixel
data, compressed without a decoder; .dcm in image folders and the doctor; 16-bit PNG/TIFF scaling."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnkit.data.imageio import ImageDecodeError, decode_image, read_image

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, SecondaryCaptureImageStorage, generate_uid  # noqa: E402


def dicom_bytes(arr: np.ndarray, photometric: str = "MONOCHROME2", center: float | None = None,
                width: float | None = None, pixels: bool = True, syntax=ExplicitVRLittleEndian) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if center is not None:
        ds.WindowCenter, ds.WindowWidth = center, width
    if pixels:
        raw = arr.astype(np.uint16).tobytes()
        if syntax.is_compressed:  # a fake JPEG 2000 stream: real framing, bytes no decoder here can read
            from pydicom.encaps import encapsulate

            raw = encapsulate([b"\xff\x4f\xff\x51" + raw[:64]])
        ds.PixelData = raw
        if syntax.is_compressed:
            ds["PixelData"].is_undefined_length = True
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


RAMP = np.tile(np.linspace(0, 4000, 32), (32, 1))


def test_min_max_without_a_window() -> None:
    img = decode_image(dicom_bytes(RAMP))
    arr = np.asarray(img)
    assert img.mode == "L" and arr.min() == 0 and arr.max() == 255
    assert np.all(np.diff(arr[0].astype(int)) >= 0)


def test_window_center_width_from_the_file() -> None:
    arr = np.asarray(decode_image(dicom_bytes(RAMP, center=1000, width=500)))[0]
    values = RAMP[0]
    assert np.all(arr[values <= 750] == 0) and np.all(arr[values >= 1250] == 255)
    inside = (values > 800) & (values < 1200)
    assert inside.any() and np.all((arr[inside] > 0) & (arr[inside] < 255))


def test_monochrome1_is_inverted() -> None:
    m2 = np.asarray(decode_image(dicom_bytes(RAMP))).astype(int)
    m1 = np.asarray(decode_image(dicom_bytes(RAMP, "MONOCHROME1"))).astype(int)
    assert np.array_equal(m1, 255 - m2)


def test_no_pixel_data_and_compressed_without_decoder() -> None:
    with pytest.raises(ImageDecodeError, match="no pixel data"):
        decode_image(dicom_bytes(RAMP, pixels=False))
    with pytest.raises(ImageDecodeError, match="compressed DICOM .* no decoder"):
        decode_image(dicom_bytes(RAMP, syntax=JPEG2000Lossless))


def test_sixteen_bit_png_and_tiff_are_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 1000], [30000, 65535]], dtype=np.uint16)
    for fmt in ("PNG", "TIFF"):
        path = tmp_path / f"x.{fmt.lower()}"
        Image.fromarray(values).save(path, fmt)
        from cnnkit.data.imageio import fit_image

        got = fit_image(decode_image(path), 2, 1)[0]
        # scaled by 255/65535: 30000 -> 117, not clipped to 255
        assert got.max() == 255 and 100 < got[1, 0] < 130 and got[0, 0] == 0, (fmt, got)


def test_dicom_folders_load_and_bad_files_are_reported(tmp_path: Path) -> None:
    from cnnkit.data.folders import load_image_folder

    rng = np.random.default_rng(0)
    for c, level in (("normal", 500), ("disease", 3000)):
        (tmp_path / c).mkdir()
        for i in range(6):
            (tmp_path / c / f"{i}.dcm").write_bytes(dicom_bytes(np.clip(rng.normal(level, 300, (24, 24)), 0, 4095)))
    (tmp_path / "normal" / "report.dcm").write_bytes(dicom_bytes(RAMP, pixels=False))
    ds = load_image_folder(tmp_path, 16, None, 0.0, 0.25, 0, skip_bad=True)
    assert ds.channels == 1 and len(ds.train) + len(ds.test) == 12
    assert ds.bad_files == [("normal/report.dcm", "DICOM file has no pixel data (a report or structured document?)")]
    assert read_image(tmp_path / "disease" / "0.dcm").mode == "L"
