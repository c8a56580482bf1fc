"""The MNIST-format shortcut of the digit preprocessing: taken exactly when the full recipe has
nothing to do, and the pixels come back untouched."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cnnkit.data.preprocess import digit_image


@pytest.fixture(scope="module")
def mnist_test(data_dir: Path) -> np.ndarray:
    from cnnkit.data.builtins import load_builtin

    return load_builtin("mnist", data_dir, download=False).test.images[:300, 0].numpy()


def test_mnist_test_digits_take_the_shortcut_unchanged(mnist_test: np.ndarray):
    taken = 0
    for img in mnist_test:
        out, steps = digit_image(img)
        if steps == ["mnist-format"]:
            taken += 1
            assert np.array_equal(out, img)
        else:  # the few whose ink touches the border go the whole way
            assert "center-of-mass" in steps
    assert taken >= 0.95 * len(mnist_test)


def test_the_full_recipe_is_close_to_the_shortcut(mnist_test: np.ndarray):
    for img in mnist_test[:50]:
        fast, _ = digit_image(img)
        full, steps = digit_image(img, shortcut=False)
        assert steps[-1] == "center-of-mass"
        assert np.abs(fast.astype(int) - full.astype(int)).mean() < 3.0  # a re-cropped faint rim at most


def _moved(img: np.ndarray) -> np.ndarray:
    return np.roll(img, 3, axis=1)


def _gray_paper(img: np.ndarray) -> np.ndarray:
    return np.maximum(img, 40).astype(np.uint8)


def _faint(img: np.ndarray) -> np.ndarray:
    return (img.astype(np.float32) * 0.6).astype(np.uint8)


def _small(img: np.ndarray) -> np.ndarray:
    from PIL import Image

    out = np.zeros_like(img)
    out[7:21, 7:21] = np.asarray(Image.fromarray(img).resize((14, 14)))
    return out


@pytest.mark.parametrize("change", [_moved, _gray_paper, _faint, _small, lambda a: 255 - a])
def test_anything_off_format_goes_the_whole_way(mnist_test: np.ndarray, change):
    img = change(mnist_test[0])
    out, steps = digit_image(img)
    assert steps != ["mnist-format"] and steps[-1] in ("center-of-mass", "blank")


def test_other_sizes_and_color_go_the_whole_way(mnist_test: np.ndarray):
    img = mnist_test[0]
    assert digit_image(img, size=32)[1] != ["mnist-format"]
    assert "grayscale" in digit_image(np.repeat(img[..., None], 3, axis=2))[1]
