"""The speed-run training options (issue 14): whitening, norm lr, decoupled decay, lookahead, flips, padding."""
import copy

import pytest
import torch
from torch import nn

from cnnkit.config import Config, TrainConfig
from cnnkit.data.dataset import ImageSet
from cnnkit.data.loaders import DeviceData, epoch_generator, train_batches, train_index_batches
from cnnkit.data.transforms import (
    AugmentPolicy,
    BatchPipeline,
    Normalization,
    alternating_flip_bits,
    alternating_flips,
    pipelines_for,
    random_translate,
)
from cnnkit.engine import make_engine, seed_everything
from cnnkit.errors import CnnkitError
from cnnkit.models import build_model
from cnnkit.training import whitening
from cnnkit.training.groups import decouple_weight_decay, scale_norm_lr
from cnnkit.training.lookahead import DECAY, EVERY, Lookahead
from cnnkit.training.loop import _param_groups, fit

PIPE3 = BatchPipeline(Normalization((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)), 20)


def _smooth_images(n=64, channels=3, size=20, seed=0):
    """Images with strongly correlated neighbouring pixels (blurred noise), as natural images have."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, channels, size + 4, size + 4, generator=g)
    x = nn.functional.avg_pool2d(x, 5, stride=1)
    x = (x - x.amin()) / (x.amax() - x.amin())
    return (x * 255).round().to(torch.uint8)


def test_whitened_first_conv_decorrelates_the_training_patches_and_is_frozen():
    images = _smooth_images()
    model = build_model("airbench", 10, 3, 20, widths=[8, 8, 8])
    conv = whitening.init_whitening(model, images, PIPE3)
    assert conv is model.whiten and not conv.weight.requires_grad
    # The first half of the filters are the whitening directions: their outputs on the patches the
    # covariance came from have covariance ~ diag(lambda / (lambda + eps)), i.e. near the identity
    # for the high-variance directions (the raw patch covariance is far from diagonal).
    with torch.no_grad():
        out = nn.functional.conv2d(PIPE3(images), conv.weight[:12])
    flat = out.permute(0, 2, 3, 1).reshape(-1, 12).double()
    cov = flat.T @ flat / len(flat)
    top = cov[:4, :4]
    assert torch.allclose(top, torch.eye(4, dtype=torch.float64), atol=0.05)
    off = cov - torch.diag(torch.diag(cov))
    assert off.abs().max() < 0.05
    # each filter comes with its negative
    assert torch.equal(conv.weight[12:], -conv.weight[:12])


def test_whiten_auto_only_touches_models_built_for_it_and_on_works_for_any_conv_net():
    images = _smooth_images(16)
    cnn = build_model("cnn", 10, 3, 20, width=4)
    before = copy.deepcopy(cnn.state_dict())
    assert whitening.maybe_whiten(cnn, "auto", images, PIPE3) is None
    assert all(torch.equal(before[k], v) for k, v in cnn.state_dict().items())
    conv = whitening.maybe_whiten(cnn, "on", images, PIPE3)
    assert conv is next(m for m in cnn.modules() if isinstance(m, nn.Conv2d)) and not conv.weight.requires_grad
    air = build_model("airbench", 10, 3, 20, widths=[8, 8, 8])
    assert whitening.maybe_whiten(air, "off", images, PIPE3) is None and air.whiten.weight.requires_grad


def test_whitening_uses_only_the_images_it_is_given():
    a, b = _smooth_images(16, seed=1), _smooth_images(16, seed=2)
    ka = whitening.patch_covariance(a, PIPE3, (2, 2))
    assert torch.allclose(ka, whitening.patch_covariance(a.clone(), PIPE3, (2, 2)))
    assert not torch.allclose(ka, whitening.patch_covariance(b, PIPE3, (2, 2)))


def test_norm_lr_mult_scales_only_normalization_parameters_and_composes_with_group_lrs():
    model = build_model("cnn", 10, 1, 28, width=4)
    groups = _param_groups(model, 5e-4)
    groups[0]["lr"] = 0.01  # as another option (e.g. a backbone multiplier) might have set
    out = scale_norm_lr(groups, model, lr=0.1, mult=64.0)
    norm_ids = {id(p) for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()}
    for group in out:
        is_norm = {id(p) in norm_ids for p in group["params"]}
        assert len(is_norm) == 1
        if is_norm == {True}:
            assert group["lr"] == pytest.approx(0.1 * 64)
        else:
            assert group.get("lr", 0.1) in (0.01, 0.1)
    assert sum(len(g["params"]) for g in out) == sum(len(g["params"]) for g in groups)
    assert scale_norm_lr(groups, model, 0.1, 1.0) is groups


@pytest.mark.parametrize("batch_size,lr", [(512, 0.5), (128, 2.0)])
def test_decoupled_weight_decay_shrinks_by_wd_per_1024_images_whatever_the_lr(batch_size, lr):
    w = nn.Parameter(torch.ones(4, 4))
    groups = decouple_weight_decay([{"params": [w], "weight_decay": 0.01}], lr, batch_size)
    opt = torch.optim.SGD(groups, lr=lr, momentum=0.0)
    w.grad = torch.zeros_like(w)
    opt.step()
    assert torch.allclose(w.detach(), torch.full((4, 4), 1 - 0.01 * batch_size / 1024))


def test_decoupled_wd_with_adam_is_refused():
    with pytest.raises(CnnkitError, match="decoupled_wd"):
        TrainConfig(optimizer="adam", decoupled_wd=True)
    with pytest.raises(CnnkitError, match="choose one"):
        TrainConfig(ema=0.99, lookahead=True)


def test_lookahead_averages_late_not_early_and_finishes_on_the_slow_weights():
    model = nn.Linear(2, 2)
    la = Lookahead(model, total_steps=100)
    assert la.decay() == 0.0
    with torch.no_grad():
        model.weight.add_(1.0)
    for _ in range(EVERY):
        la.step(model)
    # early: decay (5/100)^3 * DECAY ~ 0, so the slow copy jumps to the fast weights
    assert torch.allclose(la.slow["weight"], model.weight.detach(), atol=1e-3)
    la.steps = 100 - EVERY
    slow = la.slow["weight"].clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    for _ in range(EVERY):
        la.step(model)
    assert torch.allclose(model.weight.detach(), slow + (1 - DECAY) * 1.0)  # pulled back to the average
    with torch.no_grad():
        model.weight.add_(5.0)
    la.finish(model)
    assert torch.equal(model.weight.detach(), la.slow["weight"])
    state = copy.deepcopy(la.state_dict())
    other = Lookahead(nn.Linear(2, 2), 1)
    other.load_state_dict(state)
    assert other.steps == la.steps and torch.equal(other.slow["weight"], la.slow["weight"])


def test_alternating_flips_flip_each_image_on_exactly_one_of_two_consecutive_epochs():
    bits = alternating_flip_bits(1000, seed=3)
    assert 400 < int(bits.sum()) < 600 and torch.equal(bits, alternating_flip_bits(1000, seed=3))
    idx = torch.arange(1000)
    e0, e1, e2 = (alternating_flips(bits, idx, e) for e in (0, 1, 2))
    assert torch.equal(e0 ^ e1, torch.ones(1000, dtype=torch.bool)) and torch.equal(e0, e2)
    data = DeviceData(torch.zeros(100, 1, 4, 4, dtype=torch.uint8), torch.arange(100))
    for (_, labels), index in zip(train_batches(data, 10, epoch_generator(0, 1)), train_index_batches(data, 10, epoch_generator(0, 1))):
        assert torch.equal(labels, index)


def test_pipeline_applies_the_given_flips_and_reflect_padding():
    x = torch.arange(2 * 8 * 8, dtype=torch.uint8).view(2, 1, 8, 8)
    policy = AugmentPolicy(hflip=True, flip_mode="alternate")
    pipe = BatchPipeline(Normalization((0.0,), (1.0,)), 8, policy)
    out = pipe(x, epoch_generator(0, 0), torch.tensor([True, False]))
    base = x.float() / 255
    assert torch.equal(out[0], base[0].flip(-1)) and torch.equal(out[1], base[1])
    img = torch.rand(64, 1, 6, 6) + 1.0  # no zeros anywhere
    shifted = random_translate(img, 2, epoch_generator(0, 0), "reflect")
    assert (shifted > 0).all()
    assert (random_translate(img, 2, epoch_generator(0, 0)) == 0).any()
    train, _ = pipelines_for({"kind": "natural", "input_size": 32, "mean": [0.5] * 3, "std": [0.2] * 3}, "auto",
                             flip="alternate", pad="reflect")
    assert train.policy.flip_mode == "alternate" and train.policy.pad_mode == "reflect" and train.policy.translate == 2
    with pytest.raises(CnnkitError, match="pad"):
        Config.from_dict({"data": {"pad": "wrap"}})


def _task(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    images = _smooth_images(n, 3, 16, seed)
    images[labels == 1, :, 4:12, 4:12] = 255
    return ImageSet(images, labels)


def _speedrun_cfg(**kw):
    base = dict(epochs=3, batch_size=32, lr=0.2, momentum=0.85, weight_decay=0.002, decoupled_wd=True,
                norm_lr_mult=16.0, schedule="triangle", lookahead=True, label_smoothing=0.2, whiten_bias_epochs=1,
                progress=False, deterministic=True, seed=2)
    return TrainConfig(**{**base, **kw})


def _fit_airbench(cfg, resume=None, checkpoint=None):
    seed_everything(cfg.seed, cfg.deterministic)
    model = build_model("airbench", 2, 3, 16, widths=[8, 16, 16])
    pipe = BatchPipeline(Normalization((0.5,) * 3, (0.25,) * 3), 16)
    train = BatchPipeline(pipe.norm, 16, AugmentPolicy(translate=2, hflip=True, flip_mode="alternate", pad_mode="reflect"))
    return fit(model, _task(), _task(128, seed=1), (train, pipe), cfg, make_engine(threads=1), 2, (), checkpoint, resume)


def test_airbench_recipe_learns_and_resumes_exactly():
    cfg = _speedrun_cfg()
    full = _fit_airbench(cfg)
    assert full.history[-1]["val_accuracy"] > 0.9
    assert not full.model.whiten.bias.requires_grad  # frozen after whiten_bias_epochs
    saved = []
    _fit_airbench(cfg, checkpoint=lambda s: saved.append(copy.deepcopy(s)))
    assert saved[0]["lookahead"]["steps"] == 256 // 32
    resumed = _fit_airbench(cfg, resume=saved[0])
    assert [h["val_loss"] for h in resumed.history] == [h["val_loss"] for h in full.history]
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
