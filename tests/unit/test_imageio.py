"""decode_image / fit_image: every format, every way of being broken, every mode."""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnkit.data.imageio import ImageDecodeError, decode_image, fit_image, image_channels, read_image
from cnnkit.errors import CnnkitError


def encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def noise(w: int, h: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge image: the classic decompression bomb shape."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(b"\0" * 16)) + png_chunk(b"IEND", b""))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "WEBP", "GIF", "TIFF"])
def test_decodes_every_supported_format_from_bytes_and_path(fmt: str, tmp_path: Path) -> None:
    data = encode(noise(40, 30), fmt)
    path = tmp_path / f"x.{fmt.lower()}"
    path.write_bytes(data)
    for src in (data, path, str(path)):
        img = decode_image(src)
        assert img.size == (40, 30)
        assert fit_image(img, 16, 3).shape == (3, 16, 16)


def test_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    arr = fit_image(decode_image(buf.getvalue()), 8, 3)
    assert arr[0].min() > 200 and arr[2].max() < 50  # red, not blue


def test_exif_orientation_is_applied_and_reported() -> None:
    img = Image.new("RGB", (40, 20), (255, 255, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    decoded = read_image(encode(img, "JPEG", exif=exif))
    assert decoded.image.size == (20, 40)
    assert decoded.size == (20, 40)  # the size as displayed
    assert decoded.mode == "RGB"


def test_large_jpeg_decodes_at_reduced_size_when_a_target_is_given() -> None:
    data = encode(noise(2000, 1600), "JPEG")
    small = read_image(data, target_size=64)
    assert small.size == (2000, 1600)  # what the file holds, for the doctor
    assert min(small.image.size) >= 64 and small.image.size[0] <= 2000 // 8 + 1
    assert decode_image(data).size == (2000, 1600)  # no target: full size


def test_decompression_bomb_is_refused_with_a_reason() -> None:
    data = encode(noise(64, 64), "PNG")
    with pytest.raises(CnnkitError, match="over the limit of 1,000 .*decompression bomb"):
        decode_image(data, max_pixels=1000)
    # Past Pillow's own hard limit, Pillow refuses at open; still our one-line error.
    with pytest.raises(CnnkitError, match="decompression bomb"):
        decode_image(png_claiming(100_000, 100_000))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (np.random.default_rng(1).bytes(600), "not a PNG, JPEG"),
        (encode(noise(10, 10), "PPM"), "not a PNG, JPEG"),  # a format we do not accept
        (encode(noise(64, 64), "PNG")[:400], "corrupt or truncated PNG"),
        (encode(noise(64, 64), "JPEG")[:600], "corrupt or truncated image header"),
        (encode(noise(64, 64), "JPEG")[:-800], "corrupt or truncated JPEG"),
    ],
    ids=["empty", "random-bytes", "ppm", "truncated-png", "jpeg-header-only", "truncated-jpeg"],
)
def test_bad_input_raises_a_one_line_cnnkit_error(data: bytes, reason: str) -> None:
    with pytest.raises(ImageDecodeError) as info:
        decode_image(data)
    assert isinstance(info.value, CnnkitError)
    assert reason in info.value.reason and "\n" not in str(info.value)
    assert str(info.value).startswith("image data: ")


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(CnnkitError, match=r"empty\.png: empty file"):
        decode_image(empty)
    with pytest.raises(CnnkitError, match=r"missing\.png: file not found"):
        decode_image(tmp_path / "missing.png")
    with pytest.raises(CnnkitError, match="is a directory"):
        decode_image(tmp_path)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("1", 1), ("L", 1), ("LA", 1), ("I", 1), ("I;16", 1), ("F", 1), ("P", 3), ("RGB", 3), ("RGBA", 3), ("CMYK", 3)],
)
def test_image_channels(mode: str, expected: int) -> None:
    assert image_channels(Image.new(mode, (2, 2))) == expected


def test_fit_gives_uint8_channels_first_for_any_size() -> None:
    for size in ((100, 50), (50, 100), (7, 5), (32, 32)):
        for channels in (1, 3):
            arr = fit_image(noise(*size), 24, channels)
            assert arr.dtype == np.uint8 and arr.shape == (channels, 24, 24) and arr.flags.c_contiguous


def test_fit_resizes_the_shorter_side_and_crops_the_centre() -> None:
    stripes = np.zeros((20, 60, 3), np.uint8)
    stripes[:, :20, 0] = 255  # red left third
    stripes[:, 20:40, 1] = 255  # green centre
    stripes[:, 40:, 2] = 255  # blue right third
    arr = fit_image(Image.fromarray(stripes), 10, 3)
    # The filter reaches one source pixel past the crop, as resizing whole and then cropping does.
    inner = arr[:, :, 1:-1]
    assert (inner[1] == 255).all() and (inner[0] == 0).all() and (inner[2] == 0).all()
    tall = fit_image(Image.fromarray(stripes.transpose(1, 0, 2)), 10, 3)
    assert (tall[1, 1:-1] == 255).all()


@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA"])
def test_transparent_pixels_become_white(mode: str) -> None:
    img = Image.new("RGBA", (8, 8), (0, 0, 0, 0)).convert(mode)
    assert (fit_image(img, 8, 3) == 255).all() and (fit_image(img, 8, 1) == 255).all()


def test_palette_and_gray_transparency_keys_become_white() -> None:
    pal = Image.new("P", (8, 8), 0)
    pal.putpalette([0, 0, 0] * 256)
    pal.info["transparency"] = 0
    assert (fit_image(pal, 8, 3) == 255).all()
    gray = Image.open(io.BytesIO(encode(Image.new("L", (8, 8), 0), "PNG", transparency=0)))
    assert (fit_image(gray, 8, 1) == 255).all()


def test_half_transparent_black_is_mid_gray() -> None:
    img = Image.new("RGBA", (4, 4), (0, 0, 0, 128))
    assert np.abs(fit_image(img, 4, 1).astype(int) - 127).max() <= 1


def test_sixteen_bit_is_scaled_not_clipped() -> None:
    values = np.array([[0, 257 * 64], [257 * 128, 65535]], dtype=np.uint16)
    img = Image.open(io.BytesIO(encode(Image.fromarray(values), "PNG")))
    assert img.mode.startswith("I") and np.asarray(img).max() == 65535
    arr = fit_image(img, 2, 1)[0]
    assert arr.tolist() == [[0, 64], [128, 255]]
    assert fit_image(img, 2, 3).shape == (3, 2, 2)


def test_float_and_bilevel_and_cmyk_modes() -> None:
    assert (fit_image(Image.new("F", (4, 4), 1.0), 4, 1) == 255).all()
    assert (fit_image(Image.new("1", (4, 4), 1), 4, 1) == 255).all()
    assert (fit_image(Image.new("CMYK", (4, 4), (0, 0, 0, 0)), 4, 3) == 255).all()


def test_gray_through_rgb_equals_gray_directly() -> None:
    """The folder loader relies on this: it fits unknown images as RGB and keeps one plane."""
    gray = Image.fromarray(np.random.default_rng(2).integers(0, 256, (37, 53), dtype=np.uint8))
    rgb = fit_image(gray, 16, 3)
    assert (rgb[0] == rgb[1]).all() and (rgb[0] == rgb[2]).all()
    assert (rgb[:1] == fit_image(gray, 16, 1)).all()


def test_rgb_to_gray_uses_luma() -> None:
    arr = fit_image(Image.new("RGB", (4, 4), (255, 0, 0)), 4, 1)
    assert (arr == 76).all()  # ITU-R 601: 0.299 * 255


def test_fit_rejects_bad_channel_counts() -> None:
    with pytest.raises(ValueError):
        fit_image(noise(4, 4), 4, 2)
