"""Built-in datasets in their official distribution formats, and the entry point for any dataset.

MNIST and Fashion-MNIST are gzipped IDX files; CIFAR-10 is the "python version" (pickled
batches, read with an unpickler that only admits the numpy types those files use). Files on
disk are validated by structure; an MD5 that differs from the official release is a warning,
since people hold repacked copies. Missing files are downloaded for real users, and verified.
"""
from __future__ import annotations

import gzip
import pickle
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from cnnkit.data.dataset import Dataset, ImageSet, tensor_checksum
from cnnkit.errors import CnnkitError
from cnnkit.io import file_digest

if TYPE_CHECKING:
    from cnnkit.config import DataConfig


@dataclass(frozen=True)
class RemoteFile:
    name: str
    md5: str


@dataclass(frozen=True)
class BuiltinSpec:
    name: str
    folder: str  # sub-folder of the data root, as the official archives unpack
    files: tuple[RemoteFile, ...]
    mirrors: tuple[str, ...]
    classes: tuple[str, ...]
    kind: str
    reader: Callable[[Path], tuple[ImageSet, ImageSet]]
    archive: RemoteFile | None = None  # CIFAR ships as one tarball holding the folder


def _idx_files(train_img: str, train_lbl: str, test_img: str, test_lbl: str) -> tuple[RemoteFile, ...]:
    return (
        RemoteFile("train-images-idx3-ubyte.gz", train_img),
        RemoteFile("train-labels-idx1-ubyte.gz", train_lbl),
        RemoteFile("t10k-images-idx3-ubyte.gz", test_img),
        RemoteFile("t10k-labels-idx1-ubyte.gz", test_lbl),
    )


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


def _read_idx_dataset(folder: Path) -> tuple[ImageSet, ImageSet]:
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


def _read_cifar(folder: Path) -> tuple[ImageSet, ImageSet]:
    parts = [_read_cifar_batch(folder / f"data_batch_{i}") for i in range(1, 6)]
    xt, yt = _read_cifar_batch(folder / "test_batch")
    train = ImageSet(torch.from_numpy(np.concatenate([p[0] for p in parts])), torch.from_numpy(np.concatenate([p[1] for p in parts])))
    return train, ImageSet(torch.from_numpy(xt.copy()), torch.from_numpy(yt))


DIGITS = tuple(str(i) for i in range(10))
BUILTINS: dict[str, BuiltinSpec] = {
    spec.name: spec
    for spec in (
        BuiltinSpec(
            "mnist",
            "mnist",
            _idx_files("f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
                       "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c"),
            ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://yann.lecun.com/exdb/mnist/"),
            DIGITS,
            "digits",
            _read_idx_dataset,
        ),
        BuiltinSpec(
            "fashion-mnist",
            "fashion-mnist",
            _idx_files("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
                       "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310"),
            ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
            ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
            "natural",
            _read_idx_dataset,
        ),
        BuiltinSpec(
            "cifar10",
            "cifar-10-batches-py",
            (
                RemoteFile("data_batch_1", "c99cafc152244af753f735de768cd75f"),
                RemoteFile("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
                RemoteFile("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
                RemoteFile("data_batch_4", "634d18415352ddfa80567beed471001a"),
                RemoteFile("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
                RemoteFile("test_batch", "40351d587109b95175f43aff81a1287e"),
                RemoteFile("batches.meta", "5ff9c542aee3614f3951f8cda6e48888"),
            ),
            ("https://www.cs.toronto.edu/~kriz/",),
            ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
            "natural",
            _read_cifar,
            archive=RemoteFile("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),
        ),
    )
}
ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist", "cifar-10": "cifar10", "cifar_10": "cifar10"}


def builtin_spec(name: str) -> BuiltinSpec | None:
    key = name.lower()
    return BUILTINS.get(ALIASES.get(key, key))


def file_md5(path: Path) -> str:
    return file_digest(path, "md5")


def _download(url: str, dest: Path, md5: str, progress: bool) -> None:
    """Fetch ``url`` to ``dest`` through a temporary file, verify its MD5, then rename (atomic)."""
    from tqdm.auto import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False, suffix=".part") as tmp:
        try:
            with urllib.request.urlopen(url, timeout=30) as resp:
                total = int(resp.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
                    for chunk in iter(lambda: resp.read(1 << 16), b""):
                        tmp.write(chunk)
                        bar.update(len(chunk))
            tmp.close()
            if file_md5(Path(tmp.name)) != md5:
                raise CnnkitError(f"download of {url} has the wrong checksum (expected md5 {md5})")
            Path(tmp.name).replace(dest)
        finally:
            Path(tmp.name).unlink(missing_ok=True)


def _fetch_missing(spec: BuiltinSpec, root: Path, missing: list[str], progress: bool) -> None:
    errors = []
    for mirror in spec.mirrors:
        try:
            if spec.archive is not None:
                archive = root / spec.archive.name
                _download(mirror + spec.archive.name, archive, spec.archive.md5, progress)
                with tarfile.open(archive) as tar:
                    tar.extractall(root, filter="data")
                archive.unlink()
            else:
                for name in missing:
                    md5 = next(f.md5 for f in spec.files if f.name == name)
                    _download(mirror + name, root / spec.folder / name, md5, progress)
            return
        except (urllib.error.URLError, OSError, TimeoutError, tarfile.TarError) as exc:
            errors.append(f"{mirror}: {exc}")
    raise CnnkitError(
        f"{spec.name}: missing {', '.join(missing)} in {root / spec.folder} and the download failed "
        f"({errors[-1] if errors else 'no mirror'}); put the official files there or set --data-dir/CNNKIT_DATA"
    )


def ensure_files(spec: BuiltinSpec, root: Path, download: bool, progress: bool = True) -> list[str]:
    """Make sure the dataset's files are on disk; return warnings (e.g. non-official checksums)."""
    folder = root / spec.folder
    missing = [f.name for f in spec.files if not (folder / f.name).is_file()]
    if missing:
        if not download:
            raise CnnkitError(f"{spec.name}: missing {', '.join(missing)} in {folder} (downloads are off)")
        _fetch_missing(spec, root, missing, progress)
    differing = [f.name for f in spec.files if file_md5(folder / f.name) != f.md5]
    if differing:
        return [f"{spec.name}: {', '.join(differing)} differ from the official release's MD5 (a repacked copy?); "
                "structure checked, the data checksum is recorded with the run"]
    return []


def load_builtin(name: str, root: Path, download: bool = True, progress: bool = True) -> Dataset:
    spec = builtin_spec(name)
    if spec is None:
        raise CnnkitError(f"unknown dataset {name!r}; built-in: {', '.join(BUILTINS)}, or a folder path")
    warnings = ensure_files(spec, root, download, progress)
    train, test = spec.reader(root / spec.folder)
    return Dataset(
        name=spec.name,
        classes=list(spec.classes),
        train=train,
        test=test,
        kind=spec.kind,
        checksum=tensor_checksum(train.images, train.labels, test.images, test.labels),
        source=str(root / spec.folder),
        warnings=warnings,
    )


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


def load_dataset(cfg: "DataConfig", seed: int = 0, progress: bool = False) -> Dataset:
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
