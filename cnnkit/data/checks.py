"""The dataset doctor: what is in a dataset, and what would make training on it go wrong (text: ``check_text``).

``diagnose`` builds a CheckReport (counts, balance, unreadable files, channels, sizes, duplicates
inside a split and leakage across splits, suggested class weights). ``problems`` are fatal
(training cannot work); ``warnings`` are worth reading. ``cheap_problems`` runs only the fatal
checks, without hashing, so ``cnnkit train`` can refuse bad data before it spends any time.
"""
from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from cnnkit.data.dataset import Dataset, ImageSet
from cnnkit.data.folders import SKIPPED_PREFIX
from cnnkit.data.imageio import mode_channels
from cnnkit.errors import CnnkitError

IMBALANCE_WARN = 3.0  # largest / smallest train class above this is worth a warning
TINY_SIDE = 16  # px: images with a shorter side below this carry little for a CNN
EXAMPLES = 3  # how many duplicate groups / leaked pairs a report names
SPLIT_PAIRS = (("train", "val"), ("train", "test"), ("val", "test"))


@dataclass
class Duplicates:
    """Pixel-identical images inside one split."""

    groups: int = 0  # sets of two or more identical images
    redundant: int = 0  # images beyond the first of each group
    conflicting: int = 0  # groups whose copies carry different labels
    examples: list[list[str]] = field(default_factory=list)  # a few groups, by file or split[index]


@dataclass
class Leak:
    """Images of a later split pixel-identical to an image of an earlier one."""

    count: int = 0  # images of the later split that have a twin in the earlier one
    conflicting: int = 0  # of those, twins with a different label
    examples: list[list[str]] = field(default_factory=list)  # [earlier image, later image]


@dataclass
class CheckReport:
    name: str
    source: str
    kind: str
    classes: list[str]
    counts: dict[str, list[int]]  # split -> images per class
    image_size: int  # as loaded
    channels: int  # as loaded
    modes: dict[str, int]  # PIL mode of the source images -> count
    mixed_channels: bool  # both gray and colour source images
    sizes: dict[str, Any]  # min/median/max shorter side and the most common "WxH" of the sources
    imbalance_ratio: float | None  # largest / smallest train class; None when a class is empty
    class_weights: list[float]  # inverse train frequency, mean 1 over non-empty classes
    bad_files: list[list[str]] = field(default_factory=list)  # [file, reason]
    duplicates: dict[str, Duplicates] = field(default_factory=dict)  # split -> in-split duplicates
    leakage: dict[str, Leak] = field(default_factory=dict)  # "train/test" -> leak
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    checksum: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def totals(self) -> dict[str, int]:
        return {split: sum(c) for split, c in self.counts.items()}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: only dicts, lists, strings, numbers, booleans and None."""
        out = dataclasses.asdict(self)
        out["totals"] = self.totals
        out["ok"] = self.ok
        return out


def class_weights(counts: Sequence[int]) -> list[float]:
    """Inverse-frequency weights normalized to mean 1 over the classes that have images.

    Mean 1 keeps the loss on the same scale as unweighted training; an empty class gets 0 (it
    never appears in a batch, so its weight is never used).
    """
    inverse = [1.0 / c if c > 0 else 0.0 for c in counts]
    present = [w for w in inverse if w > 0]
    if not present:
        return [0.0] * len(counts)
    mean = sum(present) / len(present)
    return [round(w / mean, 4) for w in inverse]


def _bad_files_problem(ds: Dataset) -> str:
    first, reason = ds.bad_files[0]
    return (f"{len(ds.bad_files)} unreadable images in {ds.source or ds.name} (first: {first}: {reason}); "
            "fix or remove them, or pass --skip-bad")


def cheap_problems(ds: Dataset, skip_bad: bool = True) -> list[str]:
    """The fatal checks only (no hashing): what makes training on ``ds`` impossible or pointless.

    ``skip_bad``: unreadable files already left out by the loader are fine (the user asked for
    it); pass False when ``ds`` was loaded leniently only to inspect it and the user did not.
    """
    problems = []
    counts = ds.train.class_counts(ds.num_classes) if ds.num_classes else []
    if len(ds.train) == 0:
        problems.append(f"{ds.name} has no training images")
    if ds.num_classes < 2:
        names = ", ".join(repr(c) for c in ds.classes) or "none"
        problems.append(f"{ds.num_classes} class{'es' if ds.num_classes != 1 else ''} found ({names}); "
                        "classification needs at least 2")
    empty = [name for name, n in zip(ds.classes, counts) if n == 0]
    if empty and len(ds.train) > 0:
        shown = ", ".join(repr(c) for c in empty[:5]) + (", ..." if len(empty) > 5 else "")
        problems.append(f"{len(empty)} class(es) with no training images: {shown}")
    if ds.bad_files and not skip_bad:
        problems.append(_bad_files_problem(ds))
    return problems


def require_usable(ds: Dataset, skip_bad: bool = True) -> None:
    """Raise a CnnkitError with the first fatal problem of ``ds``, if any (run before training)."""
    problems = cheap_problems(ds, skip_bad)
    if problems:
        raise CnnkitError(f"{ds.name}: {problems[0]}")


def image_digests(images: torch.Tensor) -> list[bytes]:
    """One 128-bit blake2b digest per image of a uint8 (N, ...) tensor (equal pixels, equal digest).

    Hashing each row's bytes is one C call per image: about 0.15 s for MNIST's 60,000 on one
    core, where comparing rows with numpy (np.unique(axis=0)) takes seconds.
    """
    flat = np.ascontiguousarray(images.reshape(len(images), -1).cpu().numpy())
    return [hashlib.blake2b(row, digest_size=16).digest() for row in flat]


def _groups(digests: list[bytes]) -> dict[bytes, list[int]]:
    groups: dict[bytes, list[int]] = {}
    for i, d in enumerate(digests):
        groups.setdefault(d, []).append(i)
    return groups


def _name(split: str, s: ImageSet, i: int) -> str:
    return s.files[i] if s.files else f"{split}[{i}]"


def _duplicates(split: str, s: ImageSet, groups: dict[bytes, list[int]]) -> Duplicates:
    labels = s.labels.tolist()
    found = Duplicates()
    for members in groups.values():
        if len(members) < 2:
            continue
        found.groups += 1
        found.redundant += len(members) - 1
        found.conflicting += len({labels[i] for i in members}) > 1
        if len(found.examples) < EXAMPLES:
            found.examples.append([_name(split, s, i) for i in members[:4]])
    return found


def _leak(a: tuple[str, ImageSet, dict], b: tuple[str, ImageSet, dict]) -> Leak:
    (name_a, set_a, groups_a), (name_b, set_b, groups_b) = a, b
    labels_a, labels_b = set_a.labels.tolist(), set_b.labels.tolist()
    leak = Leak()
    for digest, members in groups_b.items():
        twins = groups_a.get(digest)
        if twins is None:
            continue
        leak.count += len(members)
        leak.conflicting += sum(labels_b[i] != labels_a[twins[0]] for i in members)
        if len(leak.examples) < EXAMPLES:
            leak.examples.append([_name(name_a, set_a, twins[0]), _name(name_b, set_b, members[0])])
    return leak


def _hash_checks(ds: Dataset) -> tuple[dict[str, Duplicates], dict[str, Leak]]:
    splits = ds.splits()
    groups = {name: _groups(image_digests(s.images)) for name, s in splits.items()}
    duplicates = {name: _duplicates(name, s, groups[name]) for name, s in splits.items()}
    leakage = {
        f"{a}/{b}": _leak((a, splits[a], groups[a]), (b, splits[b], groups[b]))
        for a, b in SPLIT_PAIRS
        if a in splits and b in splits
    }
    return duplicates, leakage


def _source_summary(ds: Dataset) -> tuple[dict[str, int], dict[str, int]]:
    """Modes and "WxH" sizes of the source images: recorded by the folder loader, or, for the
    built-in sets (stored at their native size), read off the tensors."""
    if ds.source_stats:
        return dict(ds.source_stats.get("modes", {})), dict(ds.source_stats.get("sizes", {}))
    total = sum(len(s) for s in ds.splits().values())
    _, c, h, w = ds.train.images.shape
    return {"L" if c == 1 else "RGB": total}, {f"{w}x{h}": total}


def _size_stats(sizes: dict[str, int]) -> dict[str, Any]:
    """Shorter-side statistics (what the resize to a square is driven by) and common sizes."""
    if not sizes:
        return {"min_side": None, "median_side": None, "max_side": None, "tiny": 0, "common": []}
    dims = [(tuple(int(v) for v in key.split("x")), n) for key, n in sizes.items()]
    shorter = np.repeat([min(wh) for wh, _ in dims], [n for _, n in dims])
    common = sorted(sizes.items(), key=lambda kv: -kv[1])[:5]
    return {
        "min_side": int(shorter.min()),
        "median_side": float(np.median(shorter)),
        "max_side": int(shorter.max()),
        "tiny": int((shorter < TINY_SIDE).sum()),
        "common": [[k, n] for k, n in common],
    }


def _imbalance(counts: list[int]) -> float | None:
    present = [c for c in counts if c > 0]
    if not present or len(present) < len(counts):
        return None
    return round(max(present) / min(present), 3)


def _examples(groups: list[list[str]]) -> str:
    return "; ".join(" = ".join(g) for g in groups)


def _warnings(report: CheckReport, ds: Dataset, skip_bad: bool) -> list[str]:
    out = []
    ratio, train = report.imbalance_ratio, report.counts.get("train", [])
    if ratio is not None and ratio > IMBALANCE_WARN:
        big, small = int(np.argmax(train)), int(np.argmin(train))
        out.append(f"classes are imbalanced: {ratio:.1f}x more images in {ds.classes[big]!r} ({train[big]}) than in "
                   f"{ds.classes[small]!r} ({train[small]}); consider --class-weights auto")
    for pair, leak in report.leakage.items():
        if leak.count:
            first, second = pair.split("/")
            conflict = f", {leak.conflicting} with a different label" if leak.conflicting else ""
            out.append(f"leakage: {leak.count} {second} images are pixel-identical to {first} images{conflict} "
                       f"(their scores will be optimistic), e.g. {_examples(leak.examples)}")
    for split, dup in report.duplicates.items():
        if dup.groups:
            conflict = f", {dup.conflicting} of them with different labels" if dup.conflicting else ""
            out.append(f"{split}: {dup.groups} groups of pixel-identical images ({dup.redundant} redundant copies"
                       f"{conflict}), e.g. {_examples(dup.examples)}")
    if report.mixed_channels:
        modes = ", ".join(f"{m} {n}" for m, n in report.modes.items())
        out.append(f"mixed gray and colour images ({modes}); all loaded with {report.channels} channel(s)")
    if report.sizes.get("tiny"):
        smallest = report.sizes["min_side"]
        upscaled = f", upscaled to {report.image_size}" if report.image_size > smallest else ""
        out.append(f"{report.sizes['tiny']} images have a side under {TINY_SIDE} px (smallest {smallest} px"
                   f"{upscaled}): little detail for a CNN to use")
    # The loader's own notes (e.g. a non-official checksum); "skipped N unreadable" is replaced
    # by a problem when the user did not ask to skip.
    out.extend(w for w in ds.warnings if skip_bad or not w.startswith(SKIPPED_PREFIX))
    return out


def diagnose(ds: Dataset, skip_bad: bool = True) -> CheckReport:
    """Examine ``ds``: counts, balance, bad files, channels, sizes, duplicates, leakage.

    Works for built-in and folder datasets alike. ``skip_bad`` as in ``cheap_problems``.
    """
    counts = {name: s.class_counts(ds.num_classes) for name, s in ds.splits().items()}
    modes, sizes = _source_summary(ds)
    duplicates, leakage = _hash_checks(ds)
    report = CheckReport(
        name=ds.name, source=ds.source, kind=ds.kind, classes=list(ds.classes), counts=counts,
        image_size=ds.image_size, channels=ds.channels, modes=modes,
        mixed_channels=len({mode_channels(m) for m in modes}) > 1, sizes=_size_stats(sizes),
        imbalance_ratio=_imbalance(counts["train"]), class_weights=class_weights(counts["train"]),
        bad_files=[[f, r] for f, r in ds.bad_files], duplicates=duplicates, leakage=leakage,
        problems=cheap_problems(ds, skip_bad), checksum=ds.checksum,
    )
    report.warnings = _warnings(report, ds, skip_bad)
    return report
