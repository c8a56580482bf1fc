"""Transfer learning on few photos: from scratch vs ImageNet EfficientNet-Lite0 vs --init from CIFAR-10.

The sign-language digit photos (2,062 photos, 10 classes, no split of their own) get one fixed,
seeded, stratified test split (20%) and validation split (10% of the rest); the training photos
left are cut to 10%, 25% and 100% (stratified, seeded, nested). Every arm trains on the same
images and is tested on the same test photos:

- ``cnn``, ``resnet18``: from scratch;
- ``efficientnet-lite0 --pretrained``: ImageNet weights from ``cnnkit[pretrained]``, fine-tuned;
- ``cnn --init CIFAR``: a cnnkit CIFAR-10 run's weights, fine-tuned (the script trains that run
  first, unless ``--cifar-run`` names one).

Printed per fraction and arm: test accuracy with its 95% bootstrap interval, training seconds;
then exact McNemar p-values between the arms on the same test photos. Results go to ``--out``
(JSON, rewritten after every arm, so an interrupted run keeps what finished).

    python benchmarks/transfer.py --size 64 --epochs 5 --out benchmarks/results/transfer.json

On a 2-core CPU, 224 px (EfficientNet-Lite0's native size) is out of reach; ``--size`` sets one
input size for every arm.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cnnkit.config import Config, DataConfig  # noqa: E402
from cnnkit.data.dataset import stratified_split  # noqa: E402
from cnnkit.data.folders import IMAGE_EXTENSIONS, natural_key  # noqa: E402
from cnnkit.data.sources import load_dataset  # noqa: E402
from cnnkit.evaluation.compare import paired_test  # noqa: E402
from cnnkit.evaluation.evaluate import evaluate_loaded  # noqa: E402
from cnnkit.runs import load  # noqa: E402
from cnnkit.training.recipes import with_recipe  # noqa: E402
from cnnkit.training.run import train_run  # noqa: E402

DATA = Path(os.environ.get("CNNKIT_TEST_DATA", ROOT.parent / "shared" / "data")) / "sign-language-digits"


def _files(root: Path) -> tuple[list[Path], np.ndarray, list[str]]:
    classes = sorted((d.name for d in root.iterdir() if d.is_dir()), key=natural_key)
    files, labels = [], []
    for i, c in enumerate(classes):
        found = sorted((p for p in (root / c).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS), key=lambda p: natural_key(p.name))
        files += found
        labels += [i] * len(found)
    return files, np.array(labels), classes


def make_folders(root: Path, out: Path, fractions: list[float], seed: int) -> dict[float, Path]:
    """One layout-B folder (symlinks) per fraction; test and val identical in all of them."""
    files, labels, classes = _files(root)
    rest, test = stratified_split(torch.from_numpy(labels), 0.2, seed)
    rest_labels = torch.from_numpy(labels[rest.numpy()])
    train_idx, val_idx = stratified_split(rest_labels, 0.1, seed + 1)
    train = rest.numpy()[train_idx.numpy()]
    val = rest.numpy()[val_idx.numpy()]
    folders = {}
    for frac in fractions:
        if frac >= 1:
            keep = train
        else:  # a stratified fraction of the training photos (the same seed: 10% is inside 25%)
            _, held = stratified_split(torch.from_numpy(labels[train]), frac, seed + 2)
            keep = train[held.numpy()]
        folder = out / f"frac-{frac:g}"
        for split, idx in (("train", keep), ("val", val), ("test", test.numpy())):
            for i in idx:
                dest = folder / split / classes[labels[i]] / files[i].name
                dest.parent.mkdir(parents=True, exist_ok=True)
                if not dest.exists():
                    dest.symlink_to(files[i])
        folders[frac] = folder
    return folders


def train(data: Path | str, model: str, args: argparse.Namespace, runs: Path, name: str, size: int | None,
          epochs: int, train_opts: dict | None = None, **model_opts: object) -> str:
    raw = {"data": {"name": str(data), "image_size": size}, "model": {"name": model, **model_opts},
           "train": {"epochs": epochs, "batch_size": args.batch_size, "seed": args.seed, "progress": False,
                     **(train_opts or {})},
           "run": {"name": name, "runs_dir": str(runs)}}
    if args.threads:
        raw["train"]["threads"] = args.threads
    outcome = train_run(Config.from_dict(with_recipe(raw)))  # the defaults `cnnkit train` would give
    return outcome.run.ref


def cifar_run(args: argparse.Namespace, runs: Path) -> str:
    if args.cifar_run:
        return args.cifar_run
    t0 = time.perf_counter()
    raw = {"data": {"name": "cifar10", "data_dir": str(DATA.parent), "limit": args.cifar_limit, "download": False},
           "model": {"name": "cnn", "kwargs": {"width": args.cnn_width}},
           "train": {"epochs": args.cifar_epochs, "seed": args.seed, "progress": False},
           "run": {"name": "cifar10-cnn", "runs_dir": str(runs)}}
    outcome = train_run(Config.from_dict(raw))
    print(f"CIFAR-10 parent {outcome.run.ref}: test accuracy {outcome.metrics.get('test_accuracy'):.4f} "
          f"({time.perf_counter() - t0:.0f}s)", flush=True)
    return outcome.run.ref


ARMS = ("cnn", "resnet18", "efficientnet-lite0 pretrained", "cnn --init cifar10")


def epochs_for(frac: float, epochs: int) -> int:
    """``--epochs`` is for the full split; a fraction gets up to 4x as many, so the small arms are
    not starved of optimizer steps (10% of the photos is ~4 batches an epoch)."""
    return int(math.ceil(epochs * min(4.0, 1.0 / frac)))


def run_arm(arm: str, folder: Path, args: argparse.Namespace, runs: Path, parent: str, tag: str, frac: float) -> str:
    size, epochs = args.size, epochs_for(frac, args.epochs)
    stem = {"stem": "imagenet"}  # resnet18 at small sizes: the cheap ImageNet stem (2-core budget)
    if arm == "cnn":
        return train(folder, "cnn", args, runs, f"cnn-{tag}", size, epochs, kwargs={"width": args.cnn_width})
    if arm == "resnet18":
        return train(folder, "resnet18", args, runs, f"resnet18-{tag}", size, epochs, kwargs=stem)
    if arm.startswith("efficientnet"):
        return train(folder, "efficientnet-lite0", args, runs, f"effnet-{tag}", size, epochs, pretrained=True)
    return train(folder, "cnn", args, runs, f"init-{tag}", size, epochs, init=parent, kwargs={"width": args.cnn_width})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--size", type=int, default=64, help="input size of every arm")
    p.add_argument("--epochs", type=int, default=5, help="epochs on the full split (fractions get more: epochs_for)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--fractions", default="0.1,0.25,1")
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--cnn-width", type=int, default=16)
    p.add_argument("--cifar-run", help="an existing CIFAR-10 cnn run (NAME[:vN] or a folder) for the --init arm")
    p.add_argument("--cifar-epochs", type=int, default=3)
    p.add_argument("--cifar-limit", type=int, default=10000)
    p.add_argument("--runs-dir", type=Path, help="default: a temporary folder")
    p.add_argument("--threads", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "transfer.json")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cnnkit-transfer-"))
    runs = args.runs_dir or work / "runs"
    fractions = [float(f) for f in args.fractions.split(",")]
    arms = [a for a in args.arms.split(",") if a]
    folders = make_folders(args.data, work / "data", fractions, args.seed)
    eval_ds = load_dataset(DataConfig(name=str(folders[max(fractions)]), image_size=args.size))
    parent = cifar_run(args, runs) if any("init" in a for a in arms) else ""
    report: dict = {"size": args.size, "epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed,
                    "test_images": len(eval_ds.test), "parent": parent, "results": {}}
    for frac in fractions:
        correct = {}
        block = report["results"].setdefault(f"{frac:g}", {"train_images": None, "arms": {}, "mcnemar": {}})
        for arm in arms:
            ref = run_arm(arm, folders[frac], args, runs, parent, f"{frac:g}", frac)
            loaded = load(ref, runs)
            res = evaluate_loaded(loaded, eval_ds, "test", resamples=1000)
            m = res.summary["results"]["clean"]
            correct[arm] = res.predictions["clean"].correct
            record = loaded.run.read("metrics.json")
            block["train_images"] = loaded.run.read("data.json")["counts"]["train"]
            block["arms"][arm] = {"run": ref, "accuracy": m["accuracy"], "interval": m["accuracy_ci"],
                                  "seconds": record["train_seconds"], "epochs": record["epochs"]}
            print(f"{frac:>5g} {arm:<32} acc {m['accuracy']:.4f} [{m['accuracy_ci'][0]:.4f}, "
                  f"{m['accuracy_ci'][1]:.4f}]  {record['train_seconds']:.0f}s", flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=2, default=float))
        names = list(correct)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                t = paired_test(correct[a], correct[b])
                block["mcnemar"][f"{a} | {b}"] = {"p_value": t["p_value"], "difference": t["difference"]}
                print(f"      McNemar {a} vs {b}: {100 * t['difference']:+.1f} points, p = {t['p_value']:.3g}", flush=True)
        args.out.write_text(json.dumps(report, indent=2, default=float))


if __name__ == "__main__":
    main()
