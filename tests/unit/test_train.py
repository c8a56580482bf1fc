"""The training loop on a small synthetic task that any working loop learns in seconds."""
import copy

import pytest
import torch
from torch import nn

from cnnkit.config import TrainConfig
from cnnkit.data.dataset import ImageSet
from cnnkit.data.transforms import BatchPipeline, Normalization
from cnnkit.engine import make_engine, seed_everything
from cnnkit.training.loop import SCHEDULES, auto_class_weights, fit, make_scheduler, peak_lr


def _bright_quadrant_task(n=512, seed=0):
    """Class = which quadrant of a 12x12 image holds a bright 4x4 square."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=g)
    images = torch.randint(0, 60, (n, 1, 12, 12), generator=g, dtype=torch.uint8)
    for i, c in enumerate(labels.tolist()):
        r, col = (c // 2) * 6 + 1, (c % 2) * 6 + 1
        images[i, 0, r:r + 4, col:col + 4] = 250
    return ImageSet(images, labels)


def _model():
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.1), nn.Linear(8 * 36, 4))


def _fit(cfg: TrainConfig, callbacks=(), checkpoint=None, resume=None, model=None):
    seed_everything(cfg.seed, cfg.deterministic)
    model = model or _model()
    pipe = BatchPipeline(Normalization((0.2,), (0.3,)), 12)
    return fit(model, _bright_quadrant_task(), _bright_quadrant_task(128, seed=1), (pipe, pipe), cfg,
               make_engine(threads=1), 4, callbacks, checkpoint, resume)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("schedule", ["onecycle", "cosine", "step"])
def test_learns_the_task(optimizer, schedule):
    cfg = TrainConfig(epochs=4, batch_size=32, optimizer=optimizer, schedule=schedule, progress=False, warmup_epochs=0.5)
    result = _fit(cfg)
    assert result.history[-1]["val_accuracy"] > 0.9
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_history_has_the_promised_keys():
    result = _fit(TrainConfig(epochs=1, batch_size=32, progress=False))
    assert set(result.history[0]) >= {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds"}


def test_resume_from_a_checkpoint_matches_an_uninterrupted_run():
    cfg = TrainConfig(epochs=4, batch_size=32, progress=False, deterministic=True, ema=0.9, seed=5)
    full = _fit(cfg)
    saved = []
    _fit(cfg, checkpoint=lambda state: saved.append(copy.deepcopy(state)))
    resumed = _fit(cfg, resume=saved[1])  # as if killed during epoch 3
    assert [h["val_loss"] for h in resumed.history] == [h["val_loss"] for h in full.history]
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_callback_can_stop_training():
    result = _fit(TrainConfig(epochs=5, batch_size=32, progress=False), callbacks=[lambda epoch, m: epoch == 1])
    assert len(result.history) == 2 and result.stopped_early


def test_early_stopping_restores_the_best_epoch():
    cfg = TrainConfig(epochs=12, batch_size=32, progress=False, early_stopping=1, monitor="val_loss", lr=0.5, schedule="none")
    result = _fit(cfg)
    losses = [h["val_loss"] for h in result.history]
    assert result.best_epoch == losses.index(min(losses)) + 1
    if result.stopped_early:
        assert len(losses) - result.best_epoch == 1


def test_auto_class_weights_are_inverse_frequency_with_mean_one():
    w = auto_class_weights(torch.tensor([0, 0, 0, 1]), 2)
    assert torch.allclose(w, torch.tensor([0.5, 1.5]))
    assert torch.isclose(w.mean(), torch.tensor(1.0))


def test_schedules_start_low_peak_once_and_end_low():
    cfg = TrainConfig(epochs=4, warmup_epochs=1)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    for name in SCHEDULES:
        sched = make_scheduler(opt, TrainConfig(epochs=4, warmup_epochs=1, schedule=name), per_epoch=10)
        factors = [sched.lr_lambdas[0](s) for s in range(40)]
        assert max(factors) <= 1.0 + 1e-9
        if name != "none":
            assert factors[-1] < 0.5 * max(factors)
    assert peak_lr(TrainConfig(optimizer="sgd", batch_size=256)) == pytest.approx(0.2)
    assert peak_lr(cfg) == pytest.approx(0.1)


def test_too_few_images_for_one_batch_is_bad_input():
    from cnnkit.errors import CnnkitError

    with pytest.raises(CnnkitError, match="fewer than one batch"):
        _fit(TrainConfig(epochs=1, batch_size=4096, progress=False))
