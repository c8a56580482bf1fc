"""Choosing the fine-tuning defaults: a sweep of ``--pretrained`` / ``--init`` options, judged on validation.

The same photos and splits as ``benchmarks/transfer.py`` (its ``make_folders``); each variant fine-tunes
one model on one training fraction and is scored on the **validation** photos (150), so the
defaults are chosen without looking at the test photos that ``transfer.py`` reports.

    python benchmarks/finetune_sweep.py --arm effnet --fraction 0.1 --size 96
    python benchmarks/finetune_sweep.py --arm effnet --fraction 0.1 --size 128 --only adamw-x0.1,probe
    python benchmarks/finetune_sweep.py --arm init --fraction 0.1

Variants (train options on top of the defaults; ``default`` is what ``cnnkit train --pretrained``
or ``--init`` does with no other flag: training/recipes.FINETUNE) are listed in VARIANTS; printed
per variant: validation accuracy, train accuracy at the end, seconds.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from transfer import DATA, cifar_run, epochs_for, make_folders, train  # noqa: E402

from cnnkit.config import DataConfig  # noqa: E402
from cnnkit.data.sources import load_dataset  # noqa: E402
from cnnkit.evaluation.evaluate import evaluate_loaded  # noqa: E402
from cnnkit.runs import load  # noqa: E402

VARIANTS: dict[str, dict] = {
    "default": {},
    "sgd-x0.1": {"optimizer": "sgd", "backbone_lr_mult": 0.1},
    "sgd-x1": {"optimizer": "sgd", "backbone_lr_mult": 1.0},
    "sgd-lr0.1-x0.1": {"optimizer": "sgd", "lr": 0.1, "backbone_lr_mult": 0.1},
    "sgd-lr0.1-x1": {"optimizer": "sgd", "lr": 0.1, "backbone_lr_mult": 1.0},
    "adamw-x0.1": {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.01},
    "adamw-x0.3": {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.01, "backbone_lr_mult": 0.3},
    "adamw-x1": {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.01, "backbone_lr_mult": 1.0},
    "adamw-lr3e-4-x1": {"optimizer": "adamw", "lr": 3e-4, "weight_decay": 0.01, "backbone_lr_mult": 1.0},
    "adamw-lr3e-3-x1": {"optimizer": "adamw", "lr": 3e-3, "weight_decay": 0.01, "backbone_lr_mult": 1.0},
    "adamw-lr1e-2-x1": {"optimizer": "adamw", "lr": 1e-2, "weight_decay": 0.01, "backbone_lr_mult": 1.0},
    "adamw-probe": {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.01, "freeze": "backbone"},
    "adamw-probe-unfreeze": {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.01, "freeze": "backbone",
                             "unfreeze_at": "half", "backbone_lr_mult": 0.3},
}


def options(name: str, epochs: int) -> dict:
    opts = dict(VARIANTS[name])
    if opts.get("unfreeze_at") == "half":
        opts["unfreeze_at"] = epochs // 2 + 1
    return opts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arm", choices=["effnet", "init", "resnet18"], default="effnet")
    p.add_argument("--fraction", type=float, default=0.1)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--epochs", type=int, default=5, help="for the full split; fractions get more (transfer.epochs_for)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--only", default=",".join(VARIANTS))
    p.add_argument("--cnn-width", type=int, default=16)
    p.add_argument("--cifar-run")
    p.add_argument("--cifar-epochs", type=int, default=3)
    p.add_argument("--cifar-limit", type=int, default=10000)
    p.add_argument("--runs-dir", type=Path)
    p.add_argument("--threads", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="append one JSON line per variant here")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cnnkit-sweep-"))
    runs = args.runs_dir or work / "runs"
    folder = make_folders(DATA, work / "data", [args.fraction], args.seed)[args.fraction]
    val = load_dataset(DataConfig(name=str(folder), image_size=args.size))
    parent = cifar_run(args, runs) if args.arm == "init" else ""
    epochs = epochs_for(args.fraction, args.epochs)
    print(f"{args.arm} on {args.fraction:g} of the training photos, {args.size}px, {epochs} epochs; "
          f"{len(val.val)} validation photos", flush=True)
    for name in [v for v in args.only.split(",") if v]:
        opts, tag = options(name, epochs), f"{args.arm}-{name}-{args.fraction:g}-{args.size}"
        t0 = time.perf_counter()
        if args.arm == "effnet":
            ref = train(folder, "efficientnet-lite0", args, runs, tag, args.size, epochs, opts, pretrained=True)
        elif args.arm == "resnet18":
            ref = train(folder, "resnet18", args, runs, tag, args.size, epochs, opts, kwargs={"stem": "imagenet"})
        else:
            ref = train(folder, "cnn", args, runs, tag, args.size, epochs, opts, init=parent,
                        kwargs={"width": args.cnn_width})
        loaded = load(ref, runs)
        acc = evaluate_loaded(loaded, val, "val", resamples=100).summary["results"]["clean"]["accuracy"]
        hist = loaded.run.read("history.json")
        row = {"arm": args.arm, "variant": name, "fraction": args.fraction, "size": args.size, "epochs": epochs,
               "val_accuracy": acc, "train_accuracy": hist[-1]["train_accuracy"], "seconds": time.perf_counter() - t0,
               "options": opts}
        print(f"{name:<22} val {acc:.4f}  train {row['train_accuracy']:.4f}  {row['seconds']:.0f}s", flush=True)
        if args.json:
            with args.json.open("a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
