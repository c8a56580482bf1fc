"""LeNet-5 (LeCun et al., 1998), as faithful as a modern framework makes sensible.

Kept from the paper: 5x5 valid convs with 6 and 16 maps, 2x2 average pooling, tanh, the
120-84-classes dense stack, and the 32x32 input (MNIST's 28x28 digits were padded to 32 so
strokes could reach the borders of the top feature detectors).
Simplified, as every modern re-implementation does: C3 connects to all 6 S2 maps (the paper used
a sparse connection table), S2/S4 are plain averages (the paper's had a trainable gain and bias
per map), the scaled tanh 1.7159*tanh(2x/3) is plain tanh, and the RBF output is a linear layer.
"""
from __future__ import annotations

from torch import Tensor, nn

from cnnkit.models import MODELS
from cnnkit.models.layers import check_args

NATIVE_SIZE = 32


def _fit_to_native(image_size: int) -> nn.Module:
    """Zero-pad a small input up to 32x32 (28 -> 2 px each side, as the paper did to MNIST)."""
    extra = max(0, NATIVE_SIZE - image_size)
    if extra == 0:
        return nn.Identity()
    before = extra // 2
    return nn.ZeroPad2d((before, extra - before, before, extra - before))


class LeNet5(nn.Module):
    """C1 conv5x5x6 - S2 avgpool - C3 conv5x5x16 - S4 avgpool - C5 120 - F6 84 - output."""

    def __init__(self, num_classes: int, in_channels: int, image_size: int) -> None:
        super().__init__()
        self.pad = _fit_to_native(image_size)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5), nn.Tanh(), nn.AvgPool2d(2),
            nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2),
        )
        # Inputs larger than 32 would leave S4 bigger than 5x5; averaging it down keeps C5's
        # 400 inputs (resizing the image is the caller's business, not the model's).
        self.pool = nn.AdaptiveAvgPool2d(5) if image_size > NATIVE_SIZE else nn.Identity()
        # C5 is a 5x5 conv over a 5x5 map in the paper, i.e. exactly this dense layer.
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.Tanh(),
            nn.Linear(120, 84), nn.Tanh(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.features(self.pad(x))))


@MODELS.register("lenet5")
def lenet5(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """LeNet-5 (1998): tanh, average pooling, 5x5 convs; pads inputs smaller than 32x32."""
    check_args("lenet5", num_classes, in_channels, image_size)
    return LeNet5(num_classes, in_channels, image_size)
