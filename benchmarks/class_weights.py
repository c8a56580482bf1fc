"""``--class-weights auto`` on an imbalanced training set: recall of the rare class with and without.

The sign-language digit photos get a fixed, seeded, stratified test split (20%, balanced); in
the training photos one class (``--rare``) is cut to ``--keep`` (10%) of its images. The same
cnn trains with ``--class-weights none`` and ``auto`` for each seed; printed: test recall and
precision of the rare class, macro F1 and accuracy, and exact McNemar between the two on the rare
class's test photos (did the weights change which of them are found?).

    python benchmarks/class_weights.py --size 32 --epochs 15 --seeds 0,1
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.transfer import DATA, _files  # noqa: E402
from cnnkit.config import Config  # noqa: E402
from cnnkit.data.dataset import stratified_split  # noqa: E402
from cnnkit.evaluation.compare import paired_test  # noqa: E402
from cnnkit.evaluation.evaluate import evaluate_loaded, run_dataset  # noqa: E402
from cnnkit.runs import load  # noqa: E402
from cnnkit.training.run import train_run  # noqa: E402


def imbalanced_folder(root: Path, out: Path, rare: str, keep: float, seed: int) -> Path:
    files, labels, classes = _files(root)
    train, test = stratified_split(torch.from_numpy(labels), 0.2, seed)
    rng = np.random.default_rng(seed)
    train = train.numpy()
    rare_idx = train[labels[train] == classes.index(rare)]
    dropped = set(rng.permutation(rare_idx)[int(round(keep * len(rare_idx))):].tolist())
    for split, idx in (("train", [i for i in train if i not in dropped]), ("test", test.numpy())):
        for i in idx:
            dest = out / split / classes[labels[i]] / files[i].name
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.symlink_to(files[i])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rare", default="0")
    p.add_argument("--keep", type=float, default=0.1)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "class_weights.json")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cnnkit-cw-"))
    folder = imbalanced_folder(DATA, work / "data", args.rare, args.keep, 0)
    results = []
    for seed in (int(s) for s in args.seeds.split(",")):
        correct = {}
        for weights in ("none", "auto"):
            raw = {"data": {"name": str(folder), "image_size": args.size},
                   "train": {"epochs": args.epochs, "batch_size": 32, "seed": seed, "class_weights": weights, "progress": False},
                   "run": {"name": f"cw-{weights}-s{seed}", "runs_dir": str(work / "runs")}}
            ref = train_run(Config.from_dict(raw)).run.ref
            loaded = load(ref, work / "runs")
            res = evaluate_loaded(loaded, run_dataset(loaded), "test", resamples=200)
            m = res.summary["results"]["clean"]
            row = next(r for r in m["per_class"] if r["class"] == args.rare)
            pred = res.predictions["clean"]
            rare = pred.labels == loaded.classes.index(args.rare)
            correct[weights] = pred.correct[rare]
            rec = {"seed": seed, "class_weights": weights, "rare_recall": row["recall"], "rare_precision": row["precision"],
                   "macro_f1": m["macro_f1"], "accuracy": m["accuracy"], "train_images": loaded.run.read("data.json")["counts"]}
            results.append(rec)
            print(json.dumps(rec), flush=True)
        t = paired_test(correct["none"], correct["auto"])
        print(f"seed {seed}: rare-class recall none {t['accuracy_a']:.3f} -> auto {t['accuracy_b']:.3f}, "
              f"exact McNemar p = {t['p_value']:.3g} on {int(rare.sum())} rare test photos", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rare": args.rare, "keep": args.keep, "size": args.size, "epochs": args.epochs,
                                    "results": results}, indent=2))


if __name__ == "__main__":
    main()
