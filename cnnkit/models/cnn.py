"""Plain CNNs: the tutorial baseline and the improved design that is the project's default."""
from __future__ import annotations

from torch import Tensor, nn

from cnnkit.models import MODELS
from cnnkit.models.layers import check_args, check_dropout, check_positive, conv_bn_relu, pooled_head, scaled


def _baseline_side(image_size: int) -> int:
    """Side of the last feature map: two rounds of (3x3 valid conv, 2x2 pool)."""
    side = image_size
    for _ in range(2):
        side = (side - 2) // 2
    return side


class BaselineCNN(nn.Module):
    """Two conv+ReLU+maxpool layers, dropout, one dense layer: how tutorials write a first MNIST net."""

    def __init__(self, num_classes: int, in_channels: int, image_size: int, dropout: float, hidden: int = 128) -> None:
        super().__init__()
        side = _baseline_side(image_size)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        # Flattening (not global pooling) is part of what makes it the naive baseline: the dense
        # layer's size grows with the image and it has most of the parameters.
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(64 * side * side, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


class CNN(nn.Module):
    """Three stages of conv-BN-ReLU (two, two, one convs) each ending in a 2x2 max pool, then GAP."""

    def __init__(self, num_classes: int, in_channels: int, width: float, dropout: float) -> None:
        super().__init__()
        c1, c2, c3 = scaled(1, width), scaled(2, width), scaled(4, width)
        # ceil_mode keeps the border row of odd maps (7 -> 4, not 3) and never reaches size 0.
        pool = lambda: nn.MaxPool2d(2, ceil_mode=True)  # noqa: E731
        # The 28x28 stage is where the FLOPs are, so the widest convs sit at 7x7, where they are cheap.
        self.features = nn.Sequential(
            conv_bn_relu(in_channels, c1), conv_bn_relu(c1, c1), pool(),
            conv_bn_relu(c1, c2), conv_bn_relu(c2, c2), pool(),
            conv_bn_relu(c2, c3), pool(),
        )
        self.head = pooled_head(c3, num_classes, dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


@MODELS.register("baseline-cnn")
def baseline_cnn(num_classes: int, in_channels: int, image_size: int, *, dropout: float = 0.5) -> nn.Module:
    """Tutorial baseline: 2x (conv3x3 + ReLU + maxpool), dropout, dense 128, output."""
    check_args("baseline-cnn", num_classes, in_channels, image_size, min_size=10)
    return BaselineCNN(num_classes, in_channels, image_size, check_dropout("baseline-cnn", dropout))


# Width 16 is the default because it is what a 2-core laptop trains to >= 99.3% on MNIST in under
# five minutes (benchmarks/train_recipe.py main); widen it (width=24, 32) for harder data.
@MODELS.register("cnn")
def cnn(num_classes: int, in_channels: int, image_size: int, *, width: int = 16, dropout: float = 0.25) -> nn.Module:
    """Improved CNN: conv-BN-ReLU stages (width, 2x, 4x channels), max pooling, GAP, dropout."""
    check_args("cnn", num_classes, in_channels, image_size)
    check_positive("cnn", width=width)
    return CNN(num_classes, in_channels, width, check_dropout("cnn", dropout))
