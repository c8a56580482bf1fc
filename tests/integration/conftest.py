"""Fixtures shared by several integration test modules."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def export_runs(tmp_path_factory, data_dir: Path) -> Path:
    """Runs root with ``digits:v1``: a 1-epoch MNIST cnn (about 91% test accuracy, so its INT8 export
    stays within 0.5 points), shared by the export and Hub tests (train once, reuse the eval cache)."""
    import cnnkit

    root = tmp_path_factory.mktemp("export-runs")
    cnnkit.train(data={"name": "mnist", "data_dir": str(data_dir), "limit": 4000},
                 model={"name": "cnn"}, train={"epochs": 1, "batch_size": 32, "progress": False, "threads": 2},
                 run={"name": "digits", "runs_dir": str(root)})
    return root
