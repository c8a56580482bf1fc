"""Readers for the built-in datasets' official distribution formats.

MNIST and Fashion-MNIST are gzipped IDX files; CIFAR-10 is the "python version" (pickled
batches, read with an unpickler that only admits the numpy types those files use). Files are
validated by structure: a bad file is a CnnkitError naming it.
"""
from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import torch

from cnnkit.data.dataset import ImageSet
from cnnkit.errors import CnnkitError


def read_idx(path: Path) -> np.ndarray:
    """Read a (gzipped) IDX file: magic 0x0000080D (D = number of dims), big-endian sizes, uint8."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise CnnkitError(f"{path} cannot be read: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise CnnkitError(f"{path} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) != header + int(np.prod(dims)):
        raise CnnkitError(f"{path} is truncated or padded: header says {dims}, file has {len(raw) - header} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _read_idx_split(folder: Path, images: str, labels: str) -> ImageSet:
    x, y = read_idx(folder / images), read_idx(folder / labels)
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise CnnkitError(f"{folder}: {images} {x.shape} does not match {labels} {y.shape}")
    if y.max(initial=0) > 9:
        raise CnnkitError(f"{folder}/{labels} holds labels outside 0..9")
    return ImageSet(torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype(np.int64)))


def read_idx_dataset(folder: Path) -> tuple[ImageSet, ImageSet]:
    return (
        _read_idx_split(folder, "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
        _read_idx_split(folder, "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
    )



class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits only what CIFAR-10's batches contain: dicts, lists, bytes, ints and numpy arrays."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            batch = _NumpyOnlyUnpickler(f, encoding="bytes").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError) as exc:
        raise CnnkitError(f"{path} is not a CIFAR-10 python batch: {exc}") from None
    data, labels = batch.get(b"data"), batch.get(b"labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise CnnkitError(f"{path}: 'data' must be a uint8 array of shape (N, 3072)")
    y = np.asarray(labels, dtype=np.int64)
    if y.shape != (len(data),) or y.min(initial=0) < 0 or y.max(initial=0) > 9:
        raise CnnkitError(f"{path}: 'labels' must hold one label in 0..9 per image")
    return data.reshape(-1, 3, 32, 32), y


def read_cifar(folder: Path) -> tuple[ImageSet, ImageSet]:
    parts = [_read_cifar_batch(folder / f"data_batch_{i}") for i in range(1, 6)]
    xt, yt = _read_cifar_batch(folder / "test_batch")
    train = ImageSet(torch.from_numpy(np.concatenate([p[0] for p in parts])), torch.from_numpy(np.concatenate([p[1] for p in parts])))
    return train, ImageSet(torch.from_numpy(xt.copy()), torch.from_numpy(yt))

