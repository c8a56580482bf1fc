"""GoogLeNet / Inception v1 (Szegedy et al., 2014), with batch norm after every conv as torchvision has.

Nine Inception modules with the paper's channel table and its real 5x5 branch (torchvision's
uses 3x3). For small inputs the stem keeps full resolution and downsamples once (the ImageNet
stem downsamples 8x), so a 32 px image reaches the 3a/3b, 4a-4e and 5a/5b stages at 16, 8 and
4 px; from 128 px up (stem="auto") the ImageNet stem is used. The two auxiliary classifiers are
off by default: they help a 22-layer net without batch norm train, which this one does not need.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from cnnkit.models import MODELS
from cnnkit.models.layers import (
    check_args,
    check_dropout,
    conv_bn_relu,
    kaiming_init,
    pooled_head,
    use_imagenet_stem,
)

# name: (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj), from Table 1 of the paper.
INCEPTION_TABLE: dict[str, tuple[int, int, int, int, int, int]] = {
    "3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64), "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128), "5b": (384, 192, 384, 48, 128, 128),
}
AUX_AFTER = ("4a", "4d")  # where the paper attaches its auxiliary classifiers


class Inception(nn.Module):
    """Four parallel branches (1x1; 1x1->3x3; 1x1->5x5; 3x3 max pool->1x1) concatenated."""

    def __init__(self, c_in: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pool_proj: int) -> None:
        super().__init__()
        self.branch1 = conv_bn_relu(c_in, c1, 1)
        self.branch3 = nn.Sequential(conv_bn_relu(c_in, c3r, 1), conv_bn_relu(c3r, c3, 3))
        self.branch5 = nn.Sequential(conv_bn_relu(c_in, c5r, 1), conv_bn_relu(c5r, c5, 5))
        self.branch_pool = nn.Sequential(nn.MaxPool2d(3, 1, 1), conv_bn_relu(c_in, pool_proj, 1))
        self.out_channels = c1 + c3 + c5 + pool_proj

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch1(x), self.branch3(x), self.branch5(x), self.branch_pool(x)], dim=1)


class InceptionAux(nn.Module):
    """Auxiliary classifier: pool to 4x4, 1x1 conv to 128, dense 1024, heavy dropout (0.7)."""

    def __init__(self, c_in: int, num_classes: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.AdaptiveAvgPool2d(4), conv_bn_relu(c_in, 128, 1), nn.Flatten(),
            nn.Linear(128 * 4 * 4, 1024), nn.ReLU(inplace=True), nn.Dropout(0.7), nn.Linear(1024, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


def _stem(in_channels: int, imagenet: bool) -> nn.Sequential:
    if imagenet:
        return nn.Sequential(
            conv_bn_relu(in_channels, 64, 7, stride=2), nn.MaxPool2d(3, 2, 1),
            conv_bn_relu(64, 64, 1), conv_bn_relu(64, 192, 3), nn.MaxPool2d(3, 2, 1),
        )
    return nn.Sequential(
        conv_bn_relu(in_channels, 64, 3), conv_bn_relu(64, 64, 1), conv_bn_relu(64, 192, 3), nn.MaxPool2d(3, 2, 1),
    )


class GoogLeNet(nn.Module):
    """Stem, Inception 3a-3b, pool, 4a-4e, pool, 5a-5b, global average pool, dropout, linear.

    With aux heads on, a forward pass in training mode leaves their logits in ``aux_outputs``
    (the paper adds 0.3 x their losses); the return value is always the main logits alone.
    """

    def __init__(self, num_classes: int, in_channels: int, dropout: float,
                 aux_logits: bool, imagenet_stem: bool) -> None:
        super().__init__()
        self.stem = _stem(in_channels, imagenet_stem)
        self.blocks = nn.ModuleDict()
        self.aux_heads = nn.ModuleDict()
        channels = 192
        for name, spec in INCEPTION_TABLE.items():
            if name in ("4a", "5a"):  # a 3x3/2 max pool opens stages 4 and 5
                self.blocks[f"pool{name[0]}"] = nn.MaxPool2d(3, 2, 1)
            block = Inception(channels, *spec)
            self.blocks[name] = block
            channels = block.out_channels
            if aux_logits and name in AUX_AFTER:
                self.aux_heads[name] = InceptionAux(channels, num_classes)
        self.head = pooled_head(channels, num_classes, dropout)
        self.aux_outputs: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        aux: list[Tensor] = []
        for name, block in self.blocks.items():
            x = block(x)
            if self.training and name in self.aux_heads:
                aux.append(self.aux_heads[name](x))
        self.aux_outputs = aux
        return self.head(x)


@MODELS.register("googlenet")
def googlenet(
    num_classes: int, in_channels: int, image_size: int, *,
    aux_logits: bool = False, dropout: float = 0.4, stem: str = "auto",
) -> nn.Module:
    """GoogLeNet / Inception v1 (2014) with batch norm; small-input stem; aux heads optional."""
    check_args("googlenet", num_classes, in_channels, image_size)
    imagenet = use_imagenet_stem("googlenet", stem, image_size)
    model = GoogLeNet(num_classes, in_channels, check_dropout("googlenet", dropout), bool(aux_logits), imagenet)
    return kaiming_init(model)
