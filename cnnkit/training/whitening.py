"""Patch-whitening initialisation of a model's first conv, from the images it is trained on.

Why: natural images are strongly correlated between neighbouring pixels, so the first layer of a
freshly initialised net spends its early steps learning to decorrelate them. Setting its filters
to the eigenvectors of the covariance of k x k input patches, each divided by the square root of
its eigenvalue (ZCA-like "PCA whitening"), makes its outputs uncorrelated with unit variance
from step one; airbench (arXiv 2404.00498) freezes it there, which also saves its backward pass.
Each eigenvector comes with its negative (``[v, -v]``), so a following ReLU/GELU keeps both signs.

The covariance is computed once, before the first step, on (up to ``MAX_IMAGES``) images of the
training split actually trained on (never val or test), normalised as the model will see them.
"""
from __future__ import annotations

import torch
from torch import nn

from cnnkit.data.transforms import BatchPipeline
from cnnkit.errors import CnnkitError

MAX_IMAGES = 5000  # airbench's count: the 12x12 (CIFAR) covariance is settled well before that
EPS = 5e-4  # keeps the near-zero-variance directions from being amplified into noise
_CHUNK = 500


def whitening_layer(model: nn.Module) -> nn.Conv2d:
    """The conv to whiten: the model's declared ``whitening_layer``, else its first Conv2d."""
    declared = getattr(model, "whitening_layer", None)
    if isinstance(declared, nn.Conv2d):
        return declared
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module
    raise CnnkitError(f"--whiten on needs a model with a Conv2d layer; {type(model).__name__} has none")


def declares_whitening(model: nn.Module) -> bool:
    """True for models built around a whitening layer (``--whiten auto`` turns it on for them)."""
    return isinstance(getattr(model, "whitening_layer", None), nn.Conv2d)


def patch_covariance(images: torch.Tensor, pipeline: BatchPipeline, kernel: tuple[int, int]) -> torch.Tensor:
    """Covariance (uncentred, as the conv sees it) of every k x k patch of the normalised images."""
    dim = images.shape[1] * kernel[0] * kernel[1]
    total = torch.zeros(dim, dim, dtype=torch.float64)
    count = 0
    for start in range(0, len(images), _CHUNK):
        x = pipeline(images[start:start + _CHUNK]).float().contiguous()
        # (N, C*kh*kw, L) patches in Conv2d's weight order (channel-major, then rows, then columns).
        cols = nn.functional.unfold(x, kernel).transpose(1, 2).reshape(-1, dim).double().cpu()
        total += cols.T @ cols
        count += cols.shape[0]
    return total / max(1, count)


def whitening_filters(cov: torch.Tensor, out_channels: int, shape: tuple[int, int, int]) -> torch.Tensor:
    """``out_channels`` filters: the top eigenvectors scaled by 1/sqrt(eigenvalue + EPS), each
    followed by its negative half-way through ([v1..vk, -v1..-vk]), most variance first."""
    values, vectors = torch.linalg.eigh(cov)  # ascending
    values, vectors = values.flip(0), vectors.flip(1)
    scaled = (vectors / torch.sqrt(values.clamp_min(0) + EPS)).T  # rows are filters
    half = (out_channels + 1) // 2
    top = scaled[:half]
    if half > len(top):  # more filters than patch dimensions: repeat the set
        top = top.repeat((half + len(top) - 1) // len(top), 1)[:half]
    filters = torch.cat([top, -top])[:out_channels]
    return filters.reshape(out_channels, *shape).float()


def init_whitening(model: nn.Module, images: torch.Tensor, pipeline: BatchPipeline) -> nn.Conv2d:
    """Set the whitening layer's weights from the training ``images`` (uint8) and freeze them."""
    conv = whitening_layer(model)
    if conv.groups != 1:
        raise CnnkitError("--whiten needs an ungrouped first conv")
    kh, kw = conv.kernel_size
    sample = images[:MAX_IMAGES]
    cov = patch_covariance(sample, pipeline, (kh, kw))
    with torch.no_grad():
        conv.weight.copy_(whitening_filters(cov, conv.out_channels, (conv.in_channels, kh, kw)).to(conv.weight))
        if conv.bias is not None:
            conv.bias.zero_()
    conv.weight.requires_grad_(False)
    return conv


def set_whitening_bias_trainable(conv: nn.Conv2d, epoch: int, bias_epochs: int) -> None:
    """The whitening bias learns for the first ``bias_epochs`` epochs, then freezes: with weight and
    bias frozen, autograd skips the backward pass through the first layer altogether."""
    if conv.bias is not None:
        conv.bias.requires_grad_(epoch < bias_epochs)


def maybe_whiten(model: nn.Module, mode: str, images: torch.Tensor, pipeline: BatchPipeline) -> nn.Conv2d | None:
    """``--whiten``: "on" whitens the first conv of any model, "auto" only a model's declared
    whitening layer, "off" none (a declared whitening layer then trains like any other conv).
    Returns the whitened conv, whose bias the loop freezes after ``whiten_bias_epochs``."""
    declared = declares_whitening(model)
    if mode == "off" or (mode == "auto" and not declared):
        if declared:
            whitening_layer(model).weight.requires_grad_(True)
        return None
    return init_whitening(model, images, pipeline)
