"""In-memory datasets: every split is one uint8 tensor of images and one int64 tensor of labels.

Small image datasets fit in memory (MNIST is 47 MB as uint8), so the training loop indexes them
with tensor ops instead of decoding images one by one (the airbench habit).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ImageSet:
    """One split: ``images`` uint8 (N, C, H, W), ``labels`` int64 (N,).

    ``files`` names the source file of each image when the set came from a folder (for the
    dataset doctor and error reports); it is empty for the built-in datasets.
    """

    images: torch.Tensor
    labels: torch.Tensor
    files: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"{self.images.shape[0]} images but labels of shape {tuple(self.labels.shape)}")
        if self.files and len(self.files) != len(self.labels):
            raise ValueError("files must name every image")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: torch.Tensor) -> ImageSet:
        files = tuple(self.files[i] for i in index.tolist()) if self.files else ()
        return ImageSet(self.images[index], self.labels[index], files)

    def class_counts(self, num_classes: int) -> list[int]:
        return torch.bincount(self.labels, minlength=num_classes).tolist()


@dataclass
class Dataset:
    """A named dataset with its splits and what a run must record about it.

    ``kind`` is "digits" for MNIST-like ink-on-paper data (no flips, photo preprocessing of
    digits applies) and "natural" for photos; ``checksum`` identifies the exact data a run saw.
    """

    name: str
    classes: list[str]
    train: ImageSet
    test: ImageSet | None = None
    val: ImageSet | None = None
    kind: str = "natural"
    checksum: str = ""
    source: str = ""
    warnings: list[str] = field(default_factory=list)
    bad_files: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    # What the loader saw before converting, for the dataset doctor: e.g. {"modes": {"RGB": 2059,
    # "L": 3}, "sizes": {"100x100": 2059, "3024x3024": 3}}; empty for the built-in datasets.
    source_stats: dict = field(default_factory=dict)

    @property
    def channels(self) -> int:
        return int(self.train.images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train.images.shape[-1])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def splits(self) -> dict[str, ImageSet]:
        return {name: s for name in SPLITS if (s := getattr(self, name)) is not None}


def tensor_checksum(*tensors: torch.Tensor) -> str:
    """sha256 over raw tensor bytes: the identity of the data a run was trained on."""
    digest = hashlib.sha256()
    for t in tensors:
        digest.update(str(tuple(t.shape)).encode())
        digest.update(t.contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


def stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices into (kept, held_out) with ``fraction`` of every class held out, seeded."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"split fraction must be in [0, 1), got {fraction}")
    gen = torch.Generator().manual_seed(seed)
    kept, held = [], []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        n_held = int(round(len(idx) * fraction))
        held.append(idx[:n_held])
        kept.append(idx[n_held:])
    return torch.sort(torch.cat(kept)).values, torch.sort(torch.cat(held)).values
