"""The folder loader and the doctor on the real data: sign-language-digits and MNIST.

Expected numbers come from shared/data/README.md.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from cnnkit.data.builtins import load_builtin
from cnnkit.data.check_text import format_report
from cnnkit.data.checks import diagnose
from cnnkit.data.dataset import Dataset
from cnnkit.data.folders import load_image_folder
from cnnkit.data.imageio import read_image

SIGN_COUNTS = [205, 206, 206, 206, 207, 207, 207, 206, 208, 204]
BIG_FILES = {"7/IMG_5874.JPG", "7/IMG_5935.JPG", "7/IMG_5978.JPG"}
MNIST_TRAIN = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def sign(data_dir: Path) -> Dataset:
    start = time.perf_counter()
    ds = load_image_folder(data_dir / "sign-language-digits", 64, None, 0.1, 0.2, 0, False)
    print(f"\nsign-language-digits: 2,062 JPEGs loaded at 64 px in {time.perf_counter() - start:.2f} s")
    return ds


def test_sign_language_digits_loads_completely(sign: Dataset) -> None:
    assert sign.classes == [str(d) for d in range(10)]
    assert sign.channels == 3 and sign.image_size == 64 and sign.kind == "natural"
    per_class = np.sum([s.class_counts(10) for s in sign.splits().values()], axis=0).tolist()
    assert per_class == SIGN_COUNTS and sum(per_class) == 2062
    assert sign.bad_files == [] and sign.warnings == []
    assert sign.source_stats == {"modes": {"RGB": 2062}, "sizes": {"100x100": 2059, "3024x3024": 3}}
    files = {f for s in sign.splits().values() for f in s.files}
    assert len(files) == 2062 and BIG_FILES <= files
    # Stratified 20 % test, then 10 % of the rest for val, in every class.
    assert sign.test.class_counts(10) == [round(n * 0.2) for n in SIGN_COUNTS]


def test_sign_language_digits_has_no_duplicates_or_leaks(sign: Dataset) -> None:
    report = diagnose(sign)
    assert report.problems == [] and report.warnings == []
    assert all(d.groups == 0 for d in report.duplicates.values())
    assert all(leak.count == 0 for leak in report.leakage.values())
    assert report.sizes["min_side"] == 100 and report.sizes["max_side"] == 3024
    assert report.imbalance_ratio < 1.05
    print(format_report(report))


def test_big_photos_decode_at_reduced_size(data_dir: Path) -> None:
    path = data_dir / "sign-language-digits" / "7" / "IMG_5874.JPG"
    start = time.perf_counter()
    decoded = read_image(path, target_size=64)
    elapsed = time.perf_counter() - start
    assert decoded.size == (3024, 3024) and decoded.image.size == (378, 378)  # 1/8 in the DCT
    assert elapsed < 0.5, f"{elapsed:.2f} s for one draft-decoded JPEG"


def test_mnist_doctor(data_dir: Path) -> None:
    ds = load_builtin("mnist", data_dir, download=False, progress=False)
    start = time.perf_counter()
    report = diagnose(ds)
    elapsed = time.perf_counter() - start
    print(f"\nmnist: diagnose of 70,000 images in {elapsed:.2f} s")
    assert report.counts == {"train": MNIST_TRAIN, "test": MNIST_TEST}
    assert report.problems == [] and report.warnings == []  # official files: no checksum warning either
    assert report.modes == {"L": 70000} and report.sizes["common"] == [["28x28", 70000]]
    # Independent check by exact bytes (no hashing): MNIST holds no pixel-identical images,
    # inside train, inside test, or between them.
    train = {row.tobytes() for row in ds.train.images.reshape(60000, -1).numpy()}
    test = {row.tobytes() for row in ds.test.images.reshape(10000, -1).numpy()}
    assert len(train) == 60000 and len(test) == 10000 and not train & test
    assert report.duplicates["train"].groups == report.duplicates["test"].groups == 0
    assert report.leakage["train/test"].count == 0
    assert elapsed < 4.0, f"diagnose took {elapsed:.2f} s (about 0.2 s expected)"
