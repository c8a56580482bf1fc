"""cnnkit: from a folder of images to a trained, versioned, served convolutional network.

The public API is re-exported lazily so that ``import cnnkit`` stays cheap (no torch import).
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["load", "train", "Config", "Predictor", "__version__"]


def load(ref: str, runs_dir: str | None = None, device: str = "cpu") -> Any:
    """A finished run's model, ready to use: ``cnnkit.load("mnist-cnn:v2").model``."""
    from cnnkit.runs import load as _load

    return _load(ref, runs_dir, device)


def train(config: Any = None, **sections: Any) -> Any:
    """Train a new run: ``cnnkit.train(data={"name": "mnist"}, train={"epochs": 2})``.

    As on the command line, a built-in dataset's default recipe applies when no model is named."""
    from cnnkit.config import Config as _Config
    from cnnkit.training.recipes import with_recipe
    from cnnkit.training.run import train_run

    cfg = config if isinstance(config, _Config) else _Config.from_dict(with_recipe(dict(config or {}, **sections)))
    return train_run(cfg)


def __getattr__(name: str) -> Any:
    if name == "Config":
        from cnnkit.config import Config

        return Config
    if name == "Predictor":
        from cnnkit.predict import Predictor

        return Predictor
    raise AttributeError(f"module 'cnnkit' has no attribute {name!r}")
