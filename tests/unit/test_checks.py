"""The dataset doctor on hand-made datasets (exact expectations) and on synthetic folders."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnkit.data.check_text import format_report
from cnnkit.data.checks import (
    CheckReport,
    cheap_problems,
    class_weights,
    diagnose,
    image_digests,
    require_usable,
)
from cnnkit.data.dataset import Dataset, ImageSet
from cnnkit.data.folders import load_image_folder
from cnnkit.errors import CnnkitError


def distinct(n: int, seed: int = 0, shape: tuple[int, ...] = (1, 16, 16)) -> torch.Tensor:
    """n images that differ from each other (and from other seeds' images) with certainty."""
    imgs = torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8))
    imgs[:, 0, 0, 0] = torch.arange(n, dtype=torch.uint8)
    imgs[:, 0, 0, 1] = seed
    return imgs


def make(train: ImageSet, test: ImageSet | None = None, classes: list[str] | None = None, **kw: object) -> Dataset:
    return Dataset(name="toy", classes=classes or ["a", "b"], train=train, test=test, checksum="f" * 64, **kw)


def labelled(images: torch.Tensor, labels: list[int]) -> ImageSet:
    return ImageSet(images, torch.tensor(labels, dtype=torch.int64))


def test_clean_dataset_has_no_findings() -> None:
    ds = make(labelled(distinct(6), [0, 1] * 3), labelled(distinct(4, seed=1), [0, 1] * 2))
    report = diagnose(ds)
    assert report.ok and report.problems == [] and report.warnings == []
    assert report.counts == {"train": [3, 3], "test": [2, 2]} and report.totals == {"train": 6, "test": 4}
    assert report.imbalance_ratio == 1.0 and report.class_weights == [1.0, 1.0]
    assert report.modes == {"L": 10} and not report.mixed_channels
    assert report.sizes["common"] == [["16x16", 10]] and report.sizes["min_side"] == 16 == report.sizes["max_side"]
    assert report.duplicates["train"].groups == 0 and report.leakage["train/test"].count == 0


def test_duplicates_within_a_split_are_grouped() -> None:
    imgs = distinct(8)
    imgs[3] = imgs[0]
    imgs[5] = imgs[0]  # a group of three
    imgs[7] = imgs[6]  # a pair, labelled differently
    ds = make(labelled(imgs, [0, 1, 0, 0, 1, 0, 0, 1]))
    dup = diagnose(ds).duplicates["train"]
    assert (dup.groups, dup.redundant, dup.conflicting) == (2, 3, 1)
    assert dup.examples == [["train[0]", "train[3]", "train[5]"], ["train[6]", "train[7]"]]


def test_leakage_between_splits_counts_the_evaluation_images() -> None:
    train, val, test = distinct(6), distinct(4, seed=1), distinct(4, seed=2)
    test[0] = train[2]
    test[1] = train[2]
    test[3] = val[1]
    val[0] = train[5]
    ds = make(labelled(train, [0, 1] * 3), labelled(test, [0, 0, 1, 1]), val=labelled(val, [1, 0, 1, 0]))
    report = diagnose(ds)
    leak = report.leakage
    assert list(leak) == ["train/val", "train/test", "val/test"]
    assert (leak["train/val"].count, leak["train/val"].conflicting) == (1, 0)
    assert (leak["train/test"].count, leak["train/test"].conflicting) == (2, 0)
    assert leak["train/test"].examples == [["train[2]", "test[0]"]]
    assert (leak["val/test"].count, leak["val/test"].conflicting) == (1, 1)  # labels 0 vs 1
    assert report.duplicates["test"].groups == 1  # test[0] == test[1]
    assert sum("leakage" in w for w in report.warnings) == 3
    assert report.ok  # leakage is a warning, not a fatal problem


def test_fatal_problems() -> None:
    empty = labelled(torch.zeros(0, 1, 16, 16, dtype=torch.uint8), [])
    assert any("no training images" in p for p in cheap_problems(make(empty)))
    one = make(labelled(distinct(3), [0, 0, 0]), classes=["only"])
    assert cheap_problems(one) == ["1 class found ('only'); classification needs at least 2"]
    hole = make(labelled(distinct(4), [0, 0, 2, 2]), classes=["a", "b", "c"])
    assert cheap_problems(hole) == ["1 class(es) with no training images: 'b'"]
    report = diagnose(hole)
    assert not report.ok and report.imbalance_ratio is None and report.class_weights == [1.0, 0.0, 1.0]
    with pytest.raises(CnnkitError, match="toy: 1 class\\(es\\) with no training images"):
        require_usable(hole)
    require_usable(make(labelled(distinct(4), [0, 1, 0, 1])))


def test_bad_files_are_fatal_only_when_not_skipped() -> None:
    ds = make(labelled(distinct(4), [0, 1, 0, 1]), bad_files=[("a/x.jpg", "empty file (0 bytes)")],
              warnings=["skipped 1 unreadable images in toy (first: a/x.jpg: empty file (0 bytes))"])
    assert cheap_problems(ds) == []
    assert diagnose(ds).warnings == ds.warnings and diagnose(ds).bad_files == [["a/x.jpg", "empty file (0 bytes)"]]
    strict = diagnose(ds, skip_bad=False)
    assert strict.problems == ["1 unreadable images in toy (first: a/x.jpg: empty file (0 bytes)); "
                               "fix or remove them, or pass --skip-bad"]
    assert strict.warnings == []  # "skipped" would contradict the problem


def test_imbalance_mixed_channels_tiny_images_and_loader_warnings() -> None:
    labels = [0] * 8 + [1] * 2
    stats = {"modes": {"RGB": 6, "L": 4}, "sizes": {"100x80": 7, "12x40": 3}}
    ds = make(labelled(distinct(10, shape=(3, 16, 16)), labels), source_stats=stats,
              warnings=["mnist: train-images-idx3-ubyte.gz differ from the official release's MD5"])
    report = diagnose(ds)
    assert report.imbalance_ratio == 4.0 and report.mixed_channels
    assert report.class_weights == [0.4, 1.6]  # inverse frequency, mean 1
    assert report.sizes == {"min_side": 12, "median_side": 80.0, "max_side": 80, "tiny": 3,
                            "common": [["100x80", 7], ["12x40", 3]]}
    text = "\n".join(report.warnings)
    assert "imbalanced: 4.0x more images in 'a' (8) than in 'b' (2)" in text
    assert "mixed gray and colour" in text and "3 images have a side under 16 px" in text
    assert "official release's MD5" in text
    assert report.ok


def test_class_weights_are_inverse_frequency_with_mean_one() -> None:
    w = class_weights([10, 20, 40])
    assert np.isclose(np.mean(w), 1.0, atol=1e-3) and np.isclose(w[0] / w[2], 4.0, rtol=1e-3)
    assert class_weights([0, 0]) == [0.0, 0.0]


def test_digests_depend_on_pixels_only() -> None:
    imgs = distinct(3)
    strided = torch.cat([imgs, imgs]).permute(0, 1, 3, 2).contiguous().permute(0, 1, 3, 2)
    assert image_digests(strided)[:3] == image_digests(imgs) == image_digests(strided)[3:]
    assert len(set(image_digests(imgs))) == 3


def test_report_is_json_ready_and_readable() -> None:
    imgs = distinct(5)
    imgs[4] = imgs[0]
    ds = make(labelled(imgs, [0, 1, 0, 1, 0]), labelled(distinct(2, seed=1), [0, 1]), classes=["short", "a-long-name"])
    report = diagnose(ds)
    assert isinstance(report, CheckReport)
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["counts"]["train"] == [3, 2] and data["duplicates"]["train"]["groups"] == 1 and data["ok"] is True
    text = format_report(report)
    lines = text.splitlines()
    table = lines[lines.index(next(row for row in lines if row.startswith("class"))):][:4]
    assert table[0].split() == ["class", "train", "test", "total"]
    assert table[2].split() == ["a-long-name", "2", "1", "3"]
    assert len({len(row) for row in table}) == 1  # aligned columns
    assert "warnings:" in text and "train: 1 groups of pixel-identical images" in text
    assert "suggested class weights" in text and "a-long-name  1.200" in text


def png(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (10, 10, 3), dtype=np.uint8)).save(path)


def test_folder_with_a_leak_and_duplicates_names_the_files(tmp_path: Path) -> None:
    root = tmp_path / "leaky"
    for c, name in enumerate(("cat", "dog")):
        for i in range(4):
            png(root / "train" / name / f"{i}.png", 10 * c + i)
        png(root / "test" / name / "t.png", 100 + c)
    shutil.copy(root / "train" / "cat" / "0.png", root / "test" / "dog" / "leak.png")  # leaked, wrong label
    shutil.copy(root / "train" / "dog" / "1.png", root / "train" / "dog" / "copy.png")
    ds = load_image_folder(root, 8, None, 0.0, 0.0, 0, False)
    report = diagnose(ds)
    assert report.leakage["train/test"].count == 1 and report.leakage["train/test"].conflicting == 1
    assert report.leakage["train/test"].examples == [["train/cat/0.png", "test/dog/leak.png"]]
    assert report.duplicates["train"].examples == [["train/dog/1.png", "train/dog/copy.png"]]
    assert report.modes == {"RGB": 12} and report.sizes["common"] == [["10x10", 12]]
    assert report.sizes["tiny"] == 12 and report.ok
