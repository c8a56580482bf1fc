"""The entry point for any dataset: a built-in name or a folder of class folders, by config.

The built-ins' table is ``builtins``, their readers ``formats``, their downloader ``download``;
class folders are ``folders``. Here: dispatch, forced channels, the validation split, the limit.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from cnnkit.data.builtins import builtin_spec, load_builtin
from cnnkit.data.dataset import Dataset, ImageSet

if TYPE_CHECKING:
    from cnnkit.config import DataConfig


FOLDER_DEFAULT_SIZE = 64


def is_folder_ref(name: str) -> bool:
    """A data reference is a folder when it looks like a path or is not a built-in name."""
    return builtin_spec(name) is None or any(ch in name for ch in "/\\~") or name.startswith(".")


def _force_channels(split: ImageSet, channels: int) -> ImageSet:
    have = split.images.shape[1]
    if have == channels:
        return split
    if channels == 3:
        return ImageSet(split.images.expand(-1, 3, -1, -1).contiguous(), split.labels, split.files)
    # ITU-R 601 luma, as PIL's convert("L") does, so folder and built-in gray images agree.
    weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    gray = (split.images.float() * weights).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    return ImageSet(gray, split.labels, split.files)


def load_dataset(cfg: DataConfig, seed: int = 0, progress: bool = False) -> Dataset:
    """Any dataset the config names, with channels forced, a validation split and the limit applied."""
    from cnnkit.data.dataset import stratified_split

    if is_folder_ref(cfg.name):
        from cnnkit.data.folders import load_image_folder

        ds = load_image_folder(
            Path(cfg.name).expanduser(), cfg.image_size or FOLDER_DEFAULT_SIZE, cfg.channels,
            cfg.val_fraction, cfg.test_fraction, seed, cfg.skip_bad, progress,
        )
    else:
        from cnnkit.config import data_root

        ds = load_builtin(cfg.name, data_root(cfg.data_dir), cfg.download, progress)
    if cfg.channels is not None:
        ds.train, ds.val, ds.test = (s if s is None else _force_channels(s, cfg.channels) for s in (ds.train, ds.val, ds.test))
    if ds.val is None and cfg.val_fraction > 0:
        kept, held = stratified_split(ds.train.labels, cfg.val_fraction, seed)
        ds.train, ds.val = ds.train.subset(kept), ds.train.subset(held)
    if cfg.limit is not None and cfg.limit < len(ds.train):
        ds.train = ds.train.subset(torch.arange(cfg.limit))
    return ds
