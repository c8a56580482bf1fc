"""LeNet-5 on MNIST: the tutorial recipe people copy vs `cnnkit train --model lenet5`, in one run.

The tutorial recipe: torchvision's MNIST dataset, a per-image Resize to 32x32 + ToTensor + Normalize in a
DataLoader, batch 64, Adam 1e-3, 10 epochs, the classic LeNet-5 (conv 6/16, fc 120/84). cnnkit's: the same
architecture (tanh, average pooling, 28x28 padded to 32 inside the model) trained from an in-memory uint8 tensor.

    python benchmarks/lenet_vs_tutorial.py [--data-dir ../shared/data] [--tutorial-epochs 10]
"""
from __future__ import annotations

import argparse
import gzip
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn


class TutorialLeNet(nn.Module):
    """LeNet-5 as the tutorials write it (ReLU, max pooling, 32x32 input)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def tutorial(data_dir: Path, epochs: int) -> dict:
    from torchvision import datasets, transforms

    root = Path(tempfile.mkdtemp())
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in (data_dir / "mnist").glob("*.gz"):  # torchvision wants the decompressed files here
        with gzip.open(f) as src, open(raw / f.stem, "wb") as dst:
            shutil.copyfileobj(src, dst)
    tf = transforms.Compose([transforms.Resize((32, 32)), transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    train = torch.utils.data.DataLoader(datasets.MNIST(str(root), train=True, transform=tf), batch_size=64, shuffle=True)
    test = torch.utils.data.DataLoader(datasets.MNIST(str(root), train=False, transform=tf), batch_size=1000)
    torch.manual_seed(0)
    model, loss_fn = TutorialLeNet(), nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    t0 = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for x, y in train:
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
    seconds = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        correct = sum((model(x).argmax(1) == y).sum().item() for x, y in test)
    shutil.rmtree(root)
    return {"recipe": "tutorial", "seconds": round(seconds, 1), "test_accuracy": correct / 10000}


def cnnkit_lenet(data_dir: Path, extra: list[str]) -> dict:
    runs = Path(tempfile.mkdtemp())
    cmd = [sys.executable, "-m", "cnnkit", "train", "--model", "lenet5", "--data-dir", str(data_dir),
           "--runs-dir", str(runs), "--no-progress", "--json", *extra]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    wall = time.perf_counter() - t0
    m = json.loads(out)
    shutil.rmtree(runs)
    return {"recipe": "cnnkit " + " ".join(extra), "seconds": m["train_seconds"], "wall_seconds": round(wall, 1),
            "test_accuracy": m["test_accuracy"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--tutorial-epochs", type=int, default=10)
    ap.add_argument("--cnnkit-args", default="", help="extra cnnkit train flags (default: the lenet5 recipe below)")
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    extra = args.cnnkit_args.split() or RECIPE
    ours = cnnkit_lenet(args.data_dir, extra)
    print(json.dumps(ours), flush=True)
    theirs = tutorial(args.data_dir, args.tutorial_epochs)
    print(json.dumps(theirs), flush=True)
    print(f"cnnkit lenet5: {ours['test_accuracy']:.4f} in {ours['seconds']:.1f}s training ({ours['wall_seconds']:.1f}s wall); "
          f"tutorial: {theirs['test_accuracy']:.4f} in {theirs['seconds']:.1f}s; "
          f"speed-up {theirs['seconds'] / ours['seconds']:.1f}x (wall {theirs['seconds'] / ours['wall_seconds']:.1f}x)")


# cnnkit's LeNet-5 recipe: found by hand on this 2-core machine (see the README's benchmark table).
RECIPE = ["--epochs", "6", "--batch-size", "128", "--optimizer", "sgd", "--lr", "0.2", "--augment", "none",
          "--val-fraction", "0"]

if __name__ == "__main__":
    main()
