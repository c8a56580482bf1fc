"""An airbench run end to end on a slice of real data: trained with the speed-run options, stored,
reloaded with no flags, and predicting what it was evaluated to predict (issue 14)."""
import pytest
import torch

import cnnkit
from cnnkit.data.transforms import pipelines_for


@pytest.mark.slow
def test_airbench_run_with_speedrun_options_trains_saves_and_reloads(data_dir, runs_dir):
    outcome = cnnkit.train(
        data={"name": "fashion-mnist", "data_dir": str(data_dir), "limit": 3000, "val_fraction": 0.2,
              "flip": "alternate", "pad": "reflect"},
        model={"name": "airbench", "kwargs": {"widths": [16, 32, 32]}},
        train={"epochs": 2, "batch_size": 256, "lr": 0.75, "momentum": 0.85, "weight_decay": 0.002, "decoupled_wd": True,
               "norm_lr_mult": 64.0, "schedule": "triangle", "lookahead": True, "label_smoothing": 0.2,
               "whiten_bias_epochs": 1, "progress": False, "eval_batch_size": 2000},
        run={"runs_dir": str(runs_dir)},
    )
    assert outcome.metrics["val_accuracy"] > 0.6  # 10 classes: chance is 0.1
    loaded = cnnkit.load(outcome.run.ref, runs_dir)
    # the whitening filters were computed and stored (a [v, -v] pair per direction), not left at random init
    w = loaded.model.whiten.weight
    assert torch.allclose(w[w.shape[0] // 2:], -w[: w.shape[0] // 2])
    assert loaded.config["data"]["flip"] == "alternate" and loaded.config["train"]["lookahead"] is True
    images = torch.randint(0, 255, (4, 1, 28, 28), dtype=torch.uint8)
    with torch.no_grad():
        logits = loaded.model.eval()(pipelines_for(loaded.spec["preprocess"])[1](images))
    assert logits.shape == (4, 10) and torch.isfinite(logits).all()
