"""Sanity checks that would catch a broken attribution (Adebayo et al., "Sanity Checks for Saliency Maps").

1. Patch position: the class of an image is the quadrant holding a bright 6x6 patch on noise.
   A model that gets this right must use the patch, so a correct Grad-CAM (and integrated
   gradients) puts its mass on the patch: a map of the wrong class, a flipped or misaligned
   upsampling, or the wrong layer would not.
2. Model randomization: re-initializing the weights must change the maps (an "attribution" that
   is really an edge detector of the input would survive it).

Why the model has coordinate channels: a plain conv net with global average pooling can only
tell *where* the patch is from zero-padding effects at the borders, and its Grad-CAM then
(truthfully) lights up the empty quadrants it reads that from. Giving the convolutions the pixel
coordinates lets the evidence for "top-left" sit on the patch itself, which is the situation
Grad-CAM is designed for, so the check tests the implementation, not the model's strategy.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from cnnkit import explain  # the public re-exports of cnnkit.explain.attribution

SIZE, PATCH = 32, 6


class PatchNet(nn.Module):
    """conv-ReLU-pool-conv-ReLU over (image, y, x) channels, global average pool, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                                      nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        ys = torch.linspace(-1, 1, h, device=x.device).view(1, 1, h, 1).expand(n, 1, h, w)
        xs = torch.linspace(-1, 1, w, device=x.device).view(1, 1, 1, w).expand(n, 1, h, w)
        return self.head(self.features(torch.cat([x, ys, xs], 1)))


def patches(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Noise images with one bright patch somewhere in quadrant ``label``; returns (x, label, top, left)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, SIZE, SIZE, generator=g) * 0.3
    y = torch.randint(0, 4, (n,), generator=g)
    half = SIZE // 2
    top = (y // 2) * half + torch.randint(0, half - PATCH + 1, (n,), generator=g)
    left = (y % 2) * half + torch.randint(0, half - PATCH + 1, (n,), generator=g)
    for i in range(n):
        x[i, :, top[i]:top[i] + PATCH, left[i]:left[i] + PATCH] = 1.0
    return (x - 0.2) / 0.3, y, top, left


@pytest.fixture(scope="module")
def trained() -> tuple[nn.Module, tuple]:
    torch.manual_seed(0)
    x, y, _, _ = patches(2048, seed=0)
    model = PatchNet()
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 64):
            b = order[i:i + 64]
            loss = nn.functional.cross_entropy(model(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    test = patches(64, seed=1)
    with torch.no_grad():
        accuracy = (model(test[0]).argmax(1) == test[1]).float().mean().item()
    assert accuracy > 0.95, f"the synthetic task should be learned, got accuracy {accuracy:.3f}"
    return model, test


def _near_patch(top: torch.Tensor, left: torch.Tensor, margin: int = 2) -> np.ndarray:
    """Masks (N, H, W) of each patch grown by ``margin`` px (the conv layer is at half resolution)."""
    masks = np.zeros((len(top), SIZE, SIZE), bool)
    for i, (t, x) in enumerate(zip(top.tolist(), left.tolist())):
        masks[i, max(0, t - margin):t + PATCH + margin, max(0, x - margin):x + PATCH + margin] = True
    return masks


def _mass(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    return (maps * masks).sum((1, 2)) / np.maximum(maps.sum((1, 2)), 1e-12)


def _rank_corr(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(np.nanmean([spearmanr(p.ravel(), q.ravel()).statistic for p, q in zip(a, b)]))


def test_gradcam_mass_falls_on_the_patch(trained):
    model, (x, y, top, left) = trained
    cams = explain.gradcam(model, x)  # predicted class, default layer
    assert cams.shape == (64, SIZE, SIZE) and cams.min() >= 0 and cams.max() <= 1
    masks = _near_patch(top, left)
    chance = masks.mean()  # the share of the image the grown patch covers (~0.1)
    mass = _mass(cams, masks)
    peaks = [masks[i].ravel()[int(np.argmax(cams[i]))] for i in range(len(cams))]
    assert mass.mean() > 4 * chance, f"Grad-CAM mass on the patch {mass.mean():.3f} vs chance {chance:.3f}"
    assert np.mean(peaks) >= 0.9, f"Grad-CAM peak on the patch in only {np.mean(peaks):.0%} of images"
    # Same call through the named layer and an explicit target: the public signature's other paths.
    again = explain.gradcam(model, x, target=y, layer="features.4")
    np.testing.assert_allclose(again, cams, atol=1e-5)


def test_integrated_gradients_mass_falls_on_the_patch(trained):
    model, (x, _, top, left) = trained
    black = torch.full((1, 1, 1, 1), (0.0 - 0.2) / 0.3)
    maps = explain.integrated_gradients(model, x, baseline=black)
    masks = _near_patch(top, left)
    assert _mass(maps, masks).mean() > 3 * masks.mean()


def test_model_randomization_changes_the_maps(trained):
    model, (x, y, top, left) = trained
    random_model = copy.deepcopy(model)
    torch.manual_seed(123)
    for module in random_model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            module.reset_parameters()
    masks = _near_patch(top, left)
    for method, limit in (("gradcam", 0.4), ("integrated_gradients", 0.8)):
        # The same target classes for both models: only the weights differ.
        trained_maps = explain.explain_batch(model, x, y, methods=(method,))[method]
        random_maps = explain.explain_batch(random_model, x, y, methods=(method,))[method]
        corr = _rank_corr(trained_maps, random_maps)
        # Integrated gradients keeps some likeness to the input under random weights (the paper's
        # finding too), hence its looser limit; Grad-CAM should keep almost none.
        assert corr < limit, f"{method}: rank correlation {corr:.3f} between trained and random-weight maps"
        if method == "gradcam":
            assert _mass(random_maps, masks).mean() < 0.6 * _mass(trained_maps, masks).mean()


def test_explain_leaves_the_callers_model_alone(trained):
    model, (x, *_) = trained
    before = {k: v.clone() for k, v in model.state_dict().items()}
    explain.gradcam(model, x[:4])
    assert all(m.inplace for m in model.modules() if isinstance(m, nn.ReLU))  # inplace turned off on a copy only
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()) and not model.training
