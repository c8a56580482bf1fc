"""load_image_folder on synthetic folders: layouts, formats, bad files, splits, errors."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnkit.data.folders import load_image_folder, natural_key
from cnnkit.errors import CnnkitError


def save(path: Path, img: Image.Image, **kw: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


def colour(seed: int, size: tuple[int, int] = (20, 20)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def gray(seed: int, size: tuple[int, int] = (20, 20)) -> Image.Image:
    return colour(seed, size).convert("L")


def load(path: Path, **kw: object):
    args = dict(image_size=16, channels=None, val_fraction=0.0, test_fraction=0.0, seed=0, skip_bad=False)
    args.update(kw)
    return load_image_folder(path, **args)


def balanced(root: Path, classes: tuple[str, ...] = ("a", "b"), per_class: int = 10, start: int = 0) -> Path:
    for k, name in enumerate(classes):
        for i in range(per_class):
            save(root / name / f"{i}.png", colour(start + 1000 * k + i, (12, 12)))
    return root


def png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """Three classes in mixed formats, modes and odd sizes, plus files that must be ignored."""
    root = tmp_path / "mixed"
    save(root / "cat" / "a.png", colour(1, (30, 20)))
    save(root / "cat" / "b.JPG", colour(2, (17, 41)), quality=95)
    save(root / "cat" / "c.Jpeg", gray(3, (50, 50)))
    save(root / "dog" / "d.bmp", colour(4, (9, 13)))
    save(root / "dog" / "e.png", colour(5, (16, 16)).convert("RGBA"))
    save(root / "dog" / "sub" / "f.webp", colour(6, (24, 24)))  # nested: still the class "dog"
    save(root / "eel" / "g.gif", colour(7, (20, 20)).convert("P"))
    save(root / "eel" / "h.TIFF", gray(8, (33, 21)))
    save(root / "eel" / ".hidden.png", colour(9))
    save(root / ".cache" / "i.png", colour(10))
    (root / "eel" / "notes.txt").write_text("not an image")
    (root / "eel" / ".DS_Store").write_bytes(b"\0\1")
    save(root / "loose.png", colour(11))  # not in a class folder
    return root


def test_mixed_folder_loads_every_image_once(mixed: Path) -> None:
    ds = load(mixed, image_size=24)
    assert ds.classes == ["cat", "dog", "eel"]
    assert ds.name == "mixed" and ds.source == str(mixed) and ds.kind == "natural"
    assert ds.channels == 3 and ds.image_size == 24 and ds.train.images.dtype == torch.uint8
    assert ds.train.files == ("cat/a.png", "cat/b.JPG", "cat/c.Jpeg", "dog/d.bmp", "dog/e.png",
                              "dog/sub/f.webp", "eel/g.gif", "eel/h.TIFF")
    assert ds.train.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2]
    assert ds.val is None and ds.test is None
    assert ds.source_stats["modes"] == {"RGB": 4, "L": 2, "RGBA": 1, "P": 1}
    assert ds.source_stats["sizes"]["16x16"] == 1 and sum(ds.source_stats["sizes"].values()) == 8
    assert ds.source_stats["sizes"]["33x21"] == 1
    assert ds.bad_files == [] and ds.warnings == []
    assert len(ds.checksum) == 64 and load(mixed, image_size=24).checksum == ds.checksum


def test_channels_follow_the_data_unless_forced(tmp_path: Path) -> None:
    for i in range(3):
        save(tmp_path / "g" / "x" / f"{i}.png", gray(i))
        save(tmp_path / "g" / "y" / f"{i}.png", gray(10 + i))
    ds = load(tmp_path / "g")
    assert ds.channels == 1
    forced = load(tmp_path / "g", channels=3)
    assert forced.channels == 3 and (forced.train.images[:, :1] == ds.train.images).all()
    assert ds.checksum != forced.checksum
    save(tmp_path / "g" / "y" / "colour.png", colour(99))
    assert load(tmp_path / "g").channels == 3
    assert load(tmp_path / "g", channels=1).channels == 1


def test_class_names_sort_naturally(tmp_path: Path) -> None:
    for name in ("10", "2", "1", "item9", "item10"):
        save(tmp_path / "n" / name / "x.png", colour(len(name)))
    assert load(tmp_path / "n").classes == ["1", "2", "10", "item9", "item10"]
    assert sorted(["b", "A", "a10", "a9"], key=natural_key) == ["A", "a9", "a10", "b"]


def test_bad_files_refuse_the_data_with_the_first_reason(tmp_path: Path) -> None:
    root = balanced(tmp_path / "bad", per_class=3)
    (root / "a" / "corrupt.jpg").write_bytes(np.random.default_rng(0).bytes(2000))
    full = (root / "a" / "0.png").read_bytes()
    (root / "b" / "truncated.png").write_bytes(full[: len(full) // 2])
    (root / "b" / "empty.png").write_bytes(b"")
    (root / "b" / "bomb.png").write_bytes(png_claiming(100_000, 100_000))
    with pytest.raises(CnnkitError, match=r"4 unreadable images in .*bad \(first: a/corrupt\.jpg: not a PNG.*--skip-bad"):
        load(root)
    ds = load(root, skip_bad=True)
    assert len(ds.train) == 6 and "a/corrupt.jpg" not in ds.train.files
    reasons = dict(ds.bad_files)
    assert set(reasons) == {"a/corrupt.jpg", "b/truncated.png", "b/empty.png", "b/bomb.png"}
    assert "truncated" in reasons["b/truncated.png"] and "empty" in reasons["b/empty.png"]
    assert "decompression bomb" in reasons["b/bomb.png"]
    assert len(ds.warnings) == 1 and ds.warnings[0].startswith("skipped 4 unreadable images")
    assert sum(ds.source_stats["modes"].values()) == 6


def test_all_files_bad_is_an_error_even_when_skipping(tmp_path: Path) -> None:
    (tmp_path / "x" / "a").mkdir(parents=True)
    (tmp_path / "x" / "a" / "1.png").write_bytes(b"nope")
    with pytest.raises(CnnkitError, match="none of the 1 images"):
        load(tmp_path / "x", skip_bad=True)


def test_stratified_seeded_split(tmp_path: Path) -> None:
    root = balanced(tmp_path / "s", per_class=10)
    ds = load(root, test_fraction=0.2, val_fraction=0.25)
    assert ds.test.class_counts(2) == [2, 2] and ds.val.class_counts(2) == [2, 2] and ds.train.class_counts(2) == [6, 6]
    names = [set(s.files) for s in (ds.train, ds.val, ds.test)]
    assert set.union(*names) == {f"{c}/{i}.png" for c in "ab" for i in range(10)} and sum(map(len, names)) == 20
    again = load(root, test_fraction=0.2, val_fraction=0.25)
    assert again.test.files == ds.test.files and again.checksum == ds.checksum
    other = load(root, test_fraction=0.2, val_fraction=0.25, seed=1)
    assert other.test.files != ds.test.files and other.checksum != ds.checksum
    # Labels travel with their images.
    for s in (ds.train, ds.val, ds.test):
        assert [("ab"[y]) for y in s.labels.tolist()] == [f[0] for f in s.files]
    assert load(root, test_fraction=0.2).val is None


def test_too_few_images_to_hold_out_gives_no_split(tmp_path: Path) -> None:
    root = balanced(tmp_path / "few", per_class=1)
    ds = load(root, test_fraction=0.2, val_fraction=0.1)
    assert ds.test is None and ds.val is None and len(ds.train) == 2
    assert any("no test split" in w for w in ds.warnings)


def test_train_val_test_layout(tmp_path: Path) -> None:
    root = tmp_path / "tvt"
    balanced(root / "train", ("a", "b", "c"), per_class=6)
    balanced(root / "test", ("a", "b"), per_class=2, start=50)  # no "c" in test: fine
    ds = load(root, val_fraction=0.5, test_fraction=0.5)
    assert ds.classes == ["a", "b", "c"]
    assert ds.test.class_counts(3) == [2, 2, 0] and ds.test.files[0] == "test/a/0.png"
    assert ds.val.class_counts(3) == [3, 3, 3] and ds.train.class_counts(3) == [3, 3, 3]  # val split off train
    balanced(root / "valid", ("b",), per_class=2, start=80)
    (root / "extra").mkdir()
    with_val = load(root, val_fraction=0.5)
    assert with_val.val.files == ("valid/b/0.png", "valid/b/1.png") and len(with_val.train) == 18
    assert with_val.warnings == [f"{root}: ignored folders extra (train/val/test layout)"]
    for f in (root / "test").rglob("*.png"):
        f.unlink()
    emptied = load(root, test_fraction=0.5)
    assert emptied.test.files[0].startswith("train/") and "holds no images" in emptied.warnings[-1]


def test_val_class_missing_from_train_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "tvt"
    balanced(root / "train", ("a", "b"), per_class=2)
    balanced(root / "val", ("a", "zebra"), per_class=1)
    with pytest.raises(CnnkitError, match="class 'zebra' is in .*val but not in .*train"):
        load(root)


def test_a_class_named_train_keeps_the_class_layout(tmp_path: Path) -> None:
    root = tmp_path / "odd"
    save(root / "train" / "1.png", colour(1))
    save(root / "walk" / "1.png", colour(2))
    assert load(root).classes == ["train", "walk"]


def test_empty_and_single_classes_load(tmp_path: Path) -> None:
    root = balanced(tmp_path / "e", ("a",), per_class=2)
    assert load(root).classes == ["a"]  # the doctor, not the loader, refuses one class
    (root / "empty").mkdir()
    ds = load(root)
    assert ds.classes == ["a", "empty"] and ds.train.class_counts(2) == [2, 0]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.write_text("x"), "is not a folder"),
        (lambda p: save(p / "x.png", colour(0)), "no class folders"),
        (lambda p: (p / "a").mkdir(parents=True) or (p / "a" / "x.txt").write_text("x"), "no images in"),
    ],
    ids=["missing", "file", "no-class-folders", "no-images"],
)
def test_unusable_paths_are_one_line_errors(tmp_path: Path, setup, message: str) -> None:
    path = tmp_path / "data"
    setup(path)
    with pytest.raises(CnnkitError, match=message) as info:
        load(path)
    assert "\n" not in str(info.value)


def test_progress_bar_does_not_change_the_result(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = balanced(tmp_path / "p", per_class=2)
    assert load(root, progress=True).checksum == load(root).checksum
    assert "img" in capsys.readouterr().err
