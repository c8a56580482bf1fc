"""AlexNet (Krizhevsky et al., 2012), in torchvision's single-tower form, adapted to small inputs.

Five convs (64-192-384-256-256), ReLU, overlapping 3x3/2 max pooling, then a dropout-regularised
4096-4096 dense classifier. Like torchvision, no local response normalisation (it adds nothing
once the rest is in place). For small images the 11x11 stride-4 first conv becomes a 5x5 stride-1
one and the pools are padded, so 28/32 px inputs end at a 4x4 map instead of vanishing.
From 128 px up (stem="auto") the original 11x11/4 stem is used (224 -> 7x7 -> pooled to 6x6).
"""
from __future__ import annotations

from torch import Tensor, nn

from cnnkit.models import MODELS
from cnnkit.models.layers import check_args, check_dropout, check_positive, scaled, use_imagenet_stem


class AlexNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, width: float, dropout: float, imagenet_stem: bool) -> None:
        super().__init__()
        c1, c2, c3, c4, hidden = (scaled(c, width) for c in (64, 192, 384, 256, 4096))
        if imagenet_stem:
            first = nn.Conv2d(in_channels, c1, 11, stride=4, padding=2)
        else:
            first = nn.Conv2d(in_channels, c1, 5, padding=2)
        # Padded pools (28 -> 14 -> 7 -> 4, 32 -> 16 -> 8 -> 4) never shrink a map to nothing.
        pad = 1
        self.features = nn.Sequential(
            first, nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, pad),
            nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, pad),
            nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c4, c4, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, pad),
        )
        # The native final map size (6 at 224, 4 at 28/32); other sizes are averaged to it.
        side = 6 if imagenet_stem else 4
        self.pool = nn.AdaptiveAvgPool2d(side)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout), nn.Linear(c4 * side * side, hidden), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.features(x)))


@MODELS.register("alexnet")
def alexnet(
    num_classes: int, in_channels: int, image_size: int, *, width: float = 1.0, dropout: float = 0.5, stem: str = "auto"
) -> nn.Module:
    """AlexNet (2012): 5 convs + 4096-4096 dense head; small-input stem; `width` scales all layers."""
    check_args("alexnet", num_classes, in_channels, image_size)
    check_positive("alexnet", width=width)
    imagenet = use_imagenet_stem("alexnet", stem, image_size)
    return AlexNet(num_classes, in_channels, width, check_dropout("alexnet", dropout), imagenet)
