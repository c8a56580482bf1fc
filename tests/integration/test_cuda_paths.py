"""The CUDA paths (bf16 autocast, channels_last, GPU-resident data, torch.compile) on a real GPU."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cnnkit.config import Config
from cnnkit.engine import make_engine
from cnnkit.training.run import train_run

pytestmark = pytest.mark.gpu


def test_engine_turns_on_bf16_and_channels_last_on_cuda():
    engine = make_engine("cuda")
    assert engine.amp_dtype == torch.bfloat16 and engine.channels_last and engine.device.type == "cuda"


@pytest.mark.parametrize("compile_model", [False, True])
def test_training_on_the_gpu_learns(tmp_path: Path, data_dir: Path, compile_model: bool):
    cfg = Config.from_dict({
        "data": {"name": "mnist", "data_dir": str(data_dir), "limit": 6000},
        "train": {"epochs": 2, "device": "cuda", "compile": compile_model, "progress": False, "batch_size": 256},
        "run": {"runs_dir": str(tmp_path)},
    })
    out = train_run(cfg)
    assert out.metrics["test_accuracy"] > 0.9
    assert out.run.read("env.json")["device"].startswith("cuda")
