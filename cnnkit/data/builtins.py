"""The table of built-in datasets (files, checksums, mirrors, classes) and loading one by name."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cnnkit.data.dataset import Dataset, ImageSet, tensor_checksum
from cnnkit.data.download import ensure_files
from cnnkit.data.formats import read_cifar, read_idx_dataset
from cnnkit.errors import CnnkitError


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
            read_idx_dataset,
        ),
        BuiltinSpec(
            "fashion-mnist",
            "fashion-mnist",
            _idx_files("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
                       "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310"),
            ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
            ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
            "natural",
            read_idx_dataset,
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
            read_cifar,
            archive=RemoteFile("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),
        ),
    )
}
ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist", "cifar-10": "cifar10", "cifar_10": "cifar10"}


def builtin_spec(name: str) -> BuiltinSpec | None:
    key = name.lower()
    return BUILTINS.get(ALIASES.get(key, key))


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


