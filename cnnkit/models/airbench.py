"""A network built for time-to-accuracy on small images, after the airbench CIFAR-10 speed runs.

The design (K. Jordan, "94% on CIFAR-10 in 3.29 Seconds on a Single GPU", arXiv 2404.00498), each
part there for speed:

- a 2x2 patch-whitening first conv (no padding), frozen: its weights are set from the training
  images by ``cnnkit.training.whitening`` (``--whiten auto`` does it for this model), so the first
  layer decorrelates pixels from step one instead of learning to, and costs no backward pass;
- three blocks of conv -> 2x2 max pool -> BN -> GELU -> conv -> BN -> GELU (pooling before the
  first BN halves the work of BN and GELU at the widest map);
- BatchNorm with no learned scale (the conv after it can scale; one parameter fewer per channel
  and the net is invariant to the scale of each conv's weights, so a high lr is stable);
- convs initialised partly as identity (Dirac), so early training passes the whitened input on;
- global max pool and a bias-free linear head whose output is scaled down (1/9): the logits
  start small, which with label smoothing keeps the first large-lr steps from saturating.

It fits 32x32x3 (CIFAR) and 28x28x1 (MNIST, Fashion-MNIST) alike: 32 -> 31 -> 15 -> 7 -> 3 and
28 -> 27 -> 13 -> 6 -> 3 (a final global max pool makes any size from 16 up work).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from cnnkit.errors import CnnkitError
from cnnkit.models import MODELS
from cnnkit.models.layers import check_args


class ScaleFreeBatchNorm(nn.BatchNorm2d):
    """BatchNorm whose scale stays 1 (kept as a frozen parameter, so state dicts look standard)."""

    def __init__(self, channels: int, momentum: float) -> None:
        # eps tiny: with no learned scale, BN's output variance is exactly what the next conv sees.
        super().__init__(channels, eps=1e-12, momentum=momentum)
        self.weight.requires_grad_(False)


def _conv(c_in: int, c_out: int) -> nn.Conv2d:
    conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
    with torch.no_grad():
        # Identity on the first c_in output channels: the block starts by passing its input on.
        nn.init.dirac_(conv.weight[: min(c_in, c_out)])
    return conv


class ConvBlock(nn.Module):
    """conv -> 2x2 max pool -> BN -> GELU -> conv -> BN -> GELU."""

    def __init__(self, c_in: int, c_out: int, bn_momentum: float) -> None:
        super().__init__()
        self.conv1 = _conv(c_in, c_out)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = ScaleFreeBatchNorm(c_out, bn_momentum)
        self.conv2 = _conv(c_out, c_out)
        self.norm2 = ScaleFreeBatchNorm(c_out, bn_momentum)
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self.norm1(self.pool(self.conv1(x))))
        return self.act(self.norm2(self.conv2(x)))

    def fold_batchnorm_(self) -> None:
        """In eval mode, fold both BNs into the convs (``cnnkit.models.layers.fold_batchnorm``). norm1
        sits behind the max pool, but a BN is a per-channel affine map, and max commutes with an
        affine map whose scale is positive: BN(pool(conv(x))) == pool(BN(conv(x))). The scale here is
        1/sqrt(var + eps) times a weight fixed at 1; one that is not positive is left unfolded."""
        if bool((self.norm1.weight > 0).all()):
            self.conv1, self.norm1 = fuse_conv_bn_eval(self.conv1, self.norm1), nn.Identity()
        self.conv2, self.norm2 = fuse_conv_bn_eval(self.conv2, self.norm2), nn.Identity()


class AirbenchNet(nn.Module):
    """Frozen whitening conv, three ConvBlocks, global max pool, scaled bias-free linear head."""

    def __init__(self, num_classes: int, in_channels: int, widths: tuple[int, int, int], whiten_kernel: int,
                 bn_momentum: float, head_scale: float) -> None:
        super().__init__()
        # Each whitening filter comes with its negative (see training/whitening.py), hence 2x.
        whiten_width = 2 * in_channels * whiten_kernel**2
        self.whiten = nn.Conv2d(in_channels, whiten_width, whiten_kernel, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)
        self.act = nn.GELU()
        blocks, c_in = [], whiten_width
        for width in widths:
            blocks.append(ConvBlock(c_in, width, bn_momentum))
            c_in = width
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.head = nn.Linear(c_in, num_classes, bias=False)
        self.head_scale = head_scale

    @property
    def whitening_layer(self) -> nn.Conv2d:
        """The conv ``--whiten`` initialises from training patches (training/whitening.py looks here)."""
        return self.whiten

    def forward(self, x: Tensor) -> Tensor:
        x = self.blocks(self.act(self.whiten(x)))
        return self.head(self.pool(x).flatten(1)) * self.head_scale


def _check_widths(widths: Sequence[int]) -> tuple[int, int, int]:
    if (isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence) or len(widths) != 3
            or not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths)):
        raise CnnkitError(f"model 'airbench': widths must be three positive integers (one per block), got {widths!r}")
    return (widths[0], widths[1], widths[2])


@MODELS.register("airbench")
def airbench(num_classes: int, in_channels: int, image_size: int, *, widths: Sequence[int] = (64, 256, 256),
             whiten_kernel: int = 2, bn_momentum: float = 0.4, head_scale: float = 1 / 9) -> nn.Module:
    """airbench speed-run CNN: frozen whitening conv, 3 conv-pool-BN-GELU blocks, scaled head."""
    check_args("airbench", num_classes, in_channels, image_size, min_size=16)
    if isinstance(whiten_kernel, bool) or not isinstance(whiten_kernel, int) or not 1 <= whiten_kernel <= 5:
        raise CnnkitError(f"model 'airbench': whiten_kernel must be an integer from 1 to 5, got {whiten_kernel!r}")
    if not isinstance(bn_momentum, (int, float)) or not 0.0 < bn_momentum <= 1.0:
        raise CnnkitError(f"model 'airbench': bn_momentum must be in (0, 1] (PyTorch's convention), got {bn_momentum!r}")
    if not isinstance(head_scale, (int, float)) or head_scale <= 0:
        raise CnnkitError(f"model 'airbench': head_scale must be a positive number, got {head_scale!r}")
    return AirbenchNet(num_classes, in_channels, _check_widths(widths), whiten_kernel, float(bn_momentum), float(head_scale))
