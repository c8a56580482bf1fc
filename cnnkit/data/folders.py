"""Image folders as in-memory datasets: every image decoded once, fitted, and stacked as uint8.

Two layouts are understood:

- A: ``PATH/CLASS/image`` - one folder per class; test and val are split off (stratified, seeded).
- B: ``PATH/train/CLASS/image`` with optional ``PATH/val/...`` (or ``valid``/``validation``) and
  ``PATH/test/...``; a split without a folder is split off ``train`` as in layout A.

Images are looked for recursively inside a class folder (as torchvision's ImageFolder does), so a
class kept in sub-folders loads too; hidden files and folders (".name") are ignored.
"""
from __future__ import annotations

import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cnnkit.data.dataset import SPLITS, Dataset, ImageSet, stratified_split, tensor_checksum
from cnnkit.data.imageio import ImageDecodeError, fit_image, mode_channels, read_image
from cnnkit.errors import CnnkitError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".dcm", ".dicom"})
# Starts the warning added when unreadable files are skipped (the doctor recognizes it).
SKIPPED_PREFIX = "skipped "
SPLIT_FOLDERS = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}


def natural_key(name: str) -> tuple[list[int | str], str]:
    """Sort key that orders "2" before "10" and "img9" before "img10"; ties broken by the name.

    Splitting on a capture group alternates text and digit runs, so the list compares
    str with str and int with int at every position.
    """
    parts = re.split(r"([0-9]+)", name)
    return [int(p) if i % 2 else p.lower() for i, p in enumerate(parts)], name


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _image_files(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive, hidden entries skipped), in natural order."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not _hidden(d)]  # prunes the walk
        found.extend(
            Path(dirpath, f) for f in filenames if not _hidden(f) and Path(f).suffix.lower() in IMAGE_EXTENSIONS
        )
    return sorted(found, key=lambda p: natural_key(p.relative_to(folder).as_posix()))


def _subfolders(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not _hidden(p.name)), key=lambda p: natural_key(p.name))


def _split_folders(root: Path) -> tuple[dict[str, Path], list[str]]:
    """Which layout ``root`` uses: {split: folder}, and warnings about what is ignored.

    Layout B only when ``root/train`` holds class folders: a class that happens to be named
    "train" (images directly inside) keeps layout A.
    """
    train = root / "train"
    if not (train.is_dir() and _subfolders(train)):
        return {"train": root}, []
    found = {"train": train}
    for split in ("val", "test"):
        for name in SPLIT_FOLDERS[split]:
            if (root / name).is_dir():
                found[split] = root / name
                break
    known = {p.name for p in found.values()}
    ignored = [p.name for p in _subfolders(root) if p.name not in known]
    warnings = [f"{root}: ignored folders {', '.join(ignored)} (train/val/test layout)"] if ignored else []
    return found, warnings


@dataclass
class _Scan:
    """Files to decode, in split order, with their split and class name."""

    classes: list[str]
    files: list[Path] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)


def _scan(root: Path, folders: dict[str, Path]) -> _Scan:
    per_split = {split: {d.name: _image_files(d) for d in _subfolders(folder)} for split, folder in folders.items()}
    train_classes = per_split["train"]
    if not train_classes:
        raise CnnkitError(f"no class folders in {folders['train']}: expected {folders['train']}/CLASS/image files")
    for split, classes in per_split.items():
        extra = sorted(set(classes) - set(train_classes), key=natural_key)
        if extra:
            raise CnnkitError(f"class {extra[0]!r} is in {folders[split]} but not in {folders['train']}")
    names = sorted(train_classes, key=natural_key)
    index = {name: i for i, name in enumerate(names)}
    scan = _Scan(names)
    for split in SPLITS:
        for name, files in per_split.get(split, {}).items():
            scan.files.extend(files)
            scan.splits.extend([split] * len(files))
            scan.labels.extend([index[name]] * len(files))
    if not scan.files:
        exts = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise CnnkitError(f"no images in {root} (looked for {exts} files in the class folders)")
    return scan


@dataclass
class _Decoded:
    images: np.ndarray  # uint8 (N, C, S, S); rows of bad files are left unset
    ok: np.ndarray  # bool (N,)
    modes: Counter
    sizes: Counter
    bad: list[tuple[str, str]]


def _workers() -> int:
    # Pillow releases the GIL while decoding and resizing, so threads scale with the cores; a
    # few extra hide file reads.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(32, cores + 2)


def _decode_all(root: Path, files: list[Path], image_size: int, channels: int, progress: bool) -> _Decoded:
    def load(path: Path) -> tuple[np.ndarray, str, tuple[int, int]] | str:
        try:
            decoded = read_image(path, target_size=image_size)
            return fit_image(decoded.image, image_size, channels), decoded.mode, decoded.size
        except ImageDecodeError as exc:
            return exc.reason

    from tqdm.auto import tqdm  # only when loading: keeps importing cnnkit light

    out = _Decoded(np.empty((len(files), channels, image_size, image_size), np.uint8),
                   np.zeros(len(files), bool), Counter(), Counter(), [])
    with ThreadPoolExecutor(max_workers=_workers()) as pool:
        results = pool.map(load, files)
        for i, result in enumerate(tqdm(results, total=len(files), desc=root.name, unit="img", disable=not progress)):
            if isinstance(result, str):
                out.bad.append((files[i].relative_to(root).as_posix(), result))
                continue
            out.images[i], mode, (w, h) = result
            out.ok[i] = True
            out.modes[mode] += 1
            out.sizes[f"{w}x{h}"] += 1
    return out


def _hold_out(pool: ImageSet, fraction: float, seed: int, what: str, warnings: list[str]) -> tuple[ImageSet, ImageSet | None]:
    """Move ``fraction`` of every class of ``pool`` to a new split; None when nothing moves."""
    if fraction <= 0 or len(pool) == 0:
        return pool, None
    if not fraction < 1:
        raise CnnkitError(f"{what} fraction must be in [0, 1), got {fraction}")
    kept, held = stratified_split(pool.labels, fraction, seed)
    if len(held) == 0:
        warnings.append(f"too few images to hold out {fraction:.0%} for {what}: no {what} split")
        return pool, None
    return pool.subset(kept), pool.subset(held)


def _bad_files_message(root: Path, bad: list[tuple[str, str]]) -> str:
    first, reason = bad[0]
    return f"{len(bad)} unreadable images in {root} (first: {first}: {reason})"


def _split_sets(scan: _Scan, decoded: _Decoded, root: Path, channels: int, splits_on_disk: list[str]) -> dict[str, ImageSet]:
    """One ImageSet per split folder (possibly empty), bad files dropped."""
    images = decoded.images if channels == decoded.images.shape[1] else decoded.images[:, :channels]
    rel = np.array([f.relative_to(root).as_posix() for f in scan.files], dtype=object)
    splits, labels = np.array(scan.splits, dtype=object), np.array(scan.labels, dtype=np.int64)
    sets = {}
    for split in splits_on_disk:
        keep = (splits == split) & decoded.ok
        sets[split] = ImageSet(
            torch.from_numpy(np.ascontiguousarray(images[keep])), torch.from_numpy(labels[keep]), tuple(rel[keep])
        )
    return sets


def _final_splits(
    sets: dict[str, ImageSet], folders: dict[str, Path], val_fraction: float, test_fraction: float, seed: int,
    warnings: list[str],
) -> tuple[ImageSet, ImageSet | None, ImageSet | None]:
    """(train, val, test): the split folders where they hold images, else held out of train."""
    for split in ("val", "test"):
        if split in sets and len(sets[split]) == 0:
            warnings.append(f"{folders[split]} holds no images: {split} is split off train instead")
            del sets[split]
    train, test = sets["train"], sets.get("test")
    if test is None:
        train, test = _hold_out(train, test_fraction, seed, "test", warnings)
    val = sets.get("val")
    if val is None:
        # A different seed from the test split, so the two draws are not the same pattern.
        train, val = _hold_out(train, val_fraction, seed + 1, "val", warnings)
    return train, val, test


def load_image_folder(
    path: Path,
    image_size: int,
    channels: int | None,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    skip_bad: bool,
    progress: bool = False,
) -> Dataset:
    """Load a folder of class folders (layout A) or of train/val/test folders (layout B).

    ``channels=None`` gives 3 channels if any image is in colour, else 1. Files that fail to
    decode refuse the data unless ``skip_bad``; either way they are listed in ``bad_files``.
    """
    root = Path(path)
    if not root.exists():
        raise CnnkitError(f"dataset folder {root} does not exist")
    if not root.is_dir():
        raise CnnkitError(f"{root} is not a folder (expected a folder of class folders)")
    folders, warnings = _split_folders(root)
    scan = _scan(root, folders)
    # With channels unknown, decode to RGB and keep one plane if every file turns out gray:
    # L -> RGB replicates the plane and the resize treats planes alike, so that is exact.
    decoded = _decode_all(root, scan.files, image_size, channels or 3, progress)
    if decoded.bad:
        if not skip_bad:
            raise CnnkitError(f"{_bad_files_message(root, decoded.bad)}; fix or remove them, or pass --skip-bad")
        warnings.append(f"{SKIPPED_PREFIX}{_bad_files_message(root, decoded.bad)}")
        if not decoded.ok.any():
            raise CnnkitError(f"none of the {len(scan.files)} images in {root} could be read")
    if channels is None:
        channels = max((mode_channels(m) for m in decoded.modes), default=3)
    sets = _split_sets(scan, decoded, root, channels, list(folders))
    train, val, test = _final_splits(sets, folders, val_fraction, test_fraction, seed, warnings)
    ds = Dataset(name=root.resolve().name, classes=scan.classes, train=train, test=test, val=val, kind="natural",
                 source=str(root), warnings=warnings, bad_files=decoded.bad,
                 source_stats={"modes": dict(decoded.modes.most_common()), "sizes": dict(decoded.sizes.most_common())})
    ds.checksum = tensor_checksum(*(t for s in ds.splits().values() for t in (s.images, s.labels)))
    return ds
