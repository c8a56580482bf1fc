"""Digit photo preprocessing: each MNIST step, on drawings and synthetic photos with known answers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from cnnkit.data.preprocess import digit_image


def centre_of_mass(a: np.ndarray) -> tuple[float, float]:
    a = a.astype(np.float64)
    ys, xs = np.mgrid[0:a.shape[0], 0:a.shape[1]]
    return float((a * ys).sum() / a.sum()), float((a * xs).sum() / a.sum())


def ink_box(a: np.ndarray, level: int = 30) -> tuple[int, int]:
    ys, xs = np.nonzero(a > level)
    return int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)


def seven(size=(300, 240), at=(40, 30), scale=1.0, width=14, ink=(20, 20, 30), paper=(235, 230, 215)) -> Image.Image:
    """A hand-drawn-looking 7, dark on light paper, at ``at`` (x, y)."""
    img = Image.new("RGB", size, paper)
    x, y = at
    pts = [(x, y), (x + 120 * scale, y), (x + 50 * scale, y + 170 * scale)]
    ImageDraw.Draw(img).line(pts, fill=ink, width=width, joint="curve")
    return img


def check_mnist_like(out: np.ndarray, size: int = 28) -> None:
    assert out.shape == (size, size) and out.dtype == np.uint8
    assert out.max() >= 200 and out[0].max() == 0 and out[:, 0].max() == 0  # ink bright, border dark
    cy, cx = centre_of_mass(out)
    assert abs(cy - size / 2) <= 1.0 and abs(cx - size / 2) <= 1.0
    assert max(ink_box(out)) in range(18, 22)  # fitted in a 20x20 box (anti-aliased edges)


def test_dark_ink_on_paper_becomes_mnist_like():
    out, steps = digit_image(seven())
    check_mnist_like(out)
    assert steps[0] == "grayscale" and steps[-3:] == ["crop", "fit-20x20", "center-of-mass"]
    assert "invert" in steps and "remove-background" in steps


@pytest.mark.parametrize("at, scale", [((5, 5), 0.5), ((150, 120), 0.3), ((20, 40), 1.2)])
def test_position_and_size_do_not_matter(at, scale):
    ref, _ = digit_image(seven(at=(40, 30)))
    out, _ = digit_image(seven(size=(400, 400), at=at, scale=scale, width=max(4, int(14 * scale))))
    check_mnist_like(out)
    # The same shape wherever it was and however big: mostly the same pixels lit.
    assert np.corrcoef(ref.ravel().astype(float), out.ravel().astype(float))[0, 1] > 0.8


def test_mnist_digits_are_left_nearly_alone(data_dir: Path):
    from cnnkit.data.builtins import load_builtin

    test = load_builtin("mnist", data_dir, download=False).test
    for img in test.images[:50, 0].numpy():
        out, steps = digit_image(Image.fromarray(img))
        assert "invert" not in steps and "normalize-contrast" not in steps and "thicken" not in steps
        assert np.corrcoef(img.ravel().astype(float), out.ravel().astype(float))[0, 1] > 0.9


def test_uneven_light_noise_and_a_table_edge():
    img = np.asarray(seven(size=(320, 320), at=(90, 70), scale=1.0), dtype=np.float32)
    ramp = np.linspace(0.55, 1.0, 320, dtype=np.float32)[None, :, None]  # a shadow across the page
    img = img * ramp + np.random.default_rng(0).normal(0, 6, img.shape)
    img[:, :22] = 60  # the table at the left edge
    photo = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1))
    out, steps = digit_image(photo)
    check_mnist_like(out)
    assert "remove-background" in steps


def test_a_thin_digit_is_kept_beside_a_heavy_band_at_the_edge():
    """The table's edge outweighs a fine-pen digit many times; it must not be taken for the digit."""
    clean, _ = digit_image(seven(size=(300, 300), at=(80, 70), width=4))
    img = np.asarray(seven(size=(300, 300), at=(80, 70), width=4), dtype=np.float32)
    img[6:46, :] = 50  # a dark band a few pixels in from the top (perspective fill above it)
    out, steps = digit_image(Image.fromarray(img.astype(np.uint8)))
    check_mnist_like(out)
    assert "keep-digit" in steps
    assert np.abs(out.astype(int) - clean.astype(int)).mean() < 10


def test_bold_strokes_of_a_tight_crop_are_not_hollowed():
    """A stroke a third of the photo wide is ink, not background: the top-hat must keep it whole."""
    img = Image.new("RGB", (120, 160), (230, 225, 215))
    ImageDraw.Draw(img).rectangle((42, 10, 82, 150), fill=(25, 25, 30))  # a bold "1", 40 px wide
    out, _ = digit_image(img)
    ys, xs = np.nonzero(out > 128)
    middle = out[(ys.min() + ys.max()) // 2, xs.min():xs.max() + 1]
    assert (middle > 128).all(), middle  # solid across, not two edges with a hole between


def test_specks_far_from_the_digit_are_dropped():
    clean, _ = digit_image(seven(size=(300, 300), at=(60, 60)))
    img = seven(size=(300, 300), at=(60, 60))
    ImageDraw.Draw(img).ellipse((262, 262, 278, 278), fill=(20, 20, 20))  # a blot in a corner
    out, steps = digit_image(img)
    check_mnist_like(out)
    assert "keep-digit" in steps
    assert np.abs(out.astype(int) - clean.astype(int)).max() <= 40  # the blot changed nothing


def test_colored_ink_on_colored_paper():
    out, _ = digit_image(seven(ink=(60, 60, 200), paper=(200, 150, 210)))
    check_mnist_like(out)


def test_thin_pen_is_thickened_and_bold_marker_thinned():
    thin, steps = digit_image(seven(size=(600, 600), at=(100, 100), scale=2.2, width=3))
    assert "thicken" in steps
    check_mnist_like(thin)
    bold, steps = digit_image(seven(size=(600, 600), at=(150, 150), scale=1.0, width=70))
    assert "thin" in steps


def test_blank_input_is_all_zero():
    out, steps = digit_image(Image.new("L", (100, 100), 240))
    assert steps[-1] == "blank" and out.max() == 0


def test_transparent_canvas_png_and_arrays():
    rgba = Image.new("RGBA", (200, 200), (0, 0, 0, 0))  # a canvas with only strokes painted
    ImageDraw.Draw(rgba).line([(60, 40), (140, 40), (90, 170)], fill=(0, 0, 0, 255), width=14)
    out, _ = digit_image(rgba)
    check_mnist_like(out)
    arr = np.asarray(seven())
    for variant in (arr, arr.transpose(2, 0, 1), arr.mean(axis=2).astype(np.uint8)):
        check_mnist_like(digit_image(variant)[0])
    with pytest.raises(ValueError):
        digit_image(np.zeros((2, 3, 4, 5), dtype=np.uint8))


def test_other_sizes():
    out, steps = digit_image(seven(), size=32)
    assert out.shape == (32, 32) and "fit-23x23" in steps
