"""Plain CNNs: the tutorial baseline and the improved design that is the project's default."""
from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from cnnkit.errors import CnnkitError
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
    """Three stages of conv-BN-ReLU (by default two, two, one convs) each ending in a 2x2 max pool, then GAP."""

    def __init__(self, num_classes: int, in_channels: int, width: float, dropout: float,
                 convs: tuple[int, int, int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        # One flat Sequential (not one per stage), so the default's layer names match runs saved
        # before `convs` existed. The 28x28 stage is where the FLOPs are, so the widest convs sit
        # at 7x7, where they are cheap; depth is cheapest to add there too.
        for stage, count in enumerate(convs):
            c_out = scaled(2**stage, width)
            for _ in range(count):
                layers.append(conv_bn_relu(c_in, c_out))
                c_in = c_out
            # ceil_mode keeps the border row of odd maps (7 -> 4, not 3) and never reaches size 0.
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        self.features = nn.Sequential(*layers)
        self.head = pooled_head(c_in, num_classes, dropout)

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
def cnn(num_classes: int, in_channels: int, image_size: int, *, width: int = 16, dropout: float = 0.25,
        convs: Sequence[int] = (2, 2, 1)) -> nn.Module:
    """Improved CNN: conv-BN-ReLU stages (width, 2x, 4x channels; ``convs`` convs each), max pooling, GAP, dropout."""
    check_args("cnn", num_classes, in_channels, image_size)
    check_positive("cnn", width=width)
    if (isinstance(convs, (str, bytes)) or not isinstance(convs, Sequence) or len(convs) != 3
            or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in convs)):
        raise CnnkitError(f"model 'cnn': convs must be three positive integers (convs per stage), got {convs!r}")
    return CNN(num_classes, in_channels, width, check_dropout("cnn", dropout), tuple(convs))
