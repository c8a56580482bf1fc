"""VGG (Simonyan & Zisserman, 2014): stacks of 3x3 convs, with batch norm by default.

Adapted to small inputs as the CIFAR VGGs are: the last of the five max pools is dropped (it would
take 32 -> 1 and 28 -> 0) and the pools round up, so 28/32 px inputs end at 2x2; a global average
pool then feeds a 512-512 dense head instead of ImageNet's 25088-4096-4096 one. Dropping the last
pool costs nothing at 224 either: the conv stages run at the same resolutions as the original.
"""
from __future__ import annotations

from torch import Tensor, nn

from cnnkit.models import MODELS
from cnnkit.models.layers import check_args, check_dropout, check_positive, conv_bn_relu, kaiming_init, scaled

POOL = "M"
# Configurations "A" (vgg11) and "D" (vgg16) of the paper, with the final pool removed.
CONFIGS: dict[str, list[int | str]] = {
    "vgg11": [64, POOL, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512],
    "vgg16": [64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL, 512, 512, 512, POOL, 512, 512, 512],
}


def make_features(config: list[int | str], in_channels: int, width: float,
                  batch_norm: bool) -> tuple[nn.Sequential, int]:
    """The conv trunk for a config, and its number of output channels."""
    layers: list[nn.Module] = []
    channels = in_channels
    for item in config:
        if item == POOL:
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        else:
            out = scaled(int(item), width)
            layers.append(conv_bn_relu(channels, out, bn=batch_norm))
            channels = out
    return nn.Sequential(*layers), channels


class VGG(nn.Module):
    def __init__(self, config: list[int | str], num_classes: int, in_channels: int,
                 width: float, dropout: float, batch_norm: bool) -> None:
        super().__init__()
        self.features, channels = make_features(config, in_channels, width, batch_norm)
        hidden = scaled(512, width)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Dropout(dropout), nn.Linear(channels, hidden), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def _build(name: str, num_classes: int, in_channels: int, image_size: int,
           width: float, dropout: float, batch_norm: bool) -> nn.Module:
    check_args(name, num_classes, in_channels, image_size)
    check_positive(name, width=width)
    model = VGG(CONFIGS[name], num_classes, in_channels, width, check_dropout(name, dropout), bool(batch_norm))
    return kaiming_init(model)


@MODELS.register("vgg11")
def vgg11(num_classes: int, in_channels: int, image_size: int, *,
          batch_norm: bool = True, width: float = 1.0, dropout: float = 0.5) -> nn.Module:
    """VGG-11 (config A) with batch norm, 4 pools for small inputs; `width` scales channels."""
    return _build("vgg11", num_classes, in_channels, image_size, width, dropout, batch_norm)


@MODELS.register("vgg16")
def vgg16(num_classes: int, in_channels: int, image_size: int, *,
          batch_norm: bool = True, width: float = 1.0, dropout: float = 0.5) -> nn.Module:
    """VGG-16 (config D) with batch norm, 4 pools for small inputs; `width` scales channels."""
    return _build("vgg16", num_classes, in_channels, image_size, width, dropout, batch_norm)
