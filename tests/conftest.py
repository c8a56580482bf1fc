"""Shared fixtures: where the real datasets are, and small slices of them."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """The real datasets: $CNNKIT_TEST_DATA, else ../shared/data beside the repository."""
    return Path(os.environ.get("CNNKIT_TEST_DATA") or REPO.parent / "shared" / "data")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = shared_data_dir()
    if not (path / "mnist").is_dir():
        # Fail, not skip: CI always has ../shared beside the clone, and a silent skip would hide it.
        pytest.fail(f"real datasets not found at {path}; set CNNKIT_TEST_DATA")
    return path


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    return tmp_path / "runs"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``gpu`` tests need a CUDA device; on machines without one they are reported as skipped."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
