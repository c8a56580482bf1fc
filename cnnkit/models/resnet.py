"""ResNet (He et al., 2015): 18/34 with basic blocks, 50 with bottlenecks (stride on the 3x3, "v1.5").

For small inputs the stem is the CIFAR one: a 3x3 stride-1 conv and no max pool, so a 32 px image
reaches the four stages at 32, 16, 8 and 4 px (the ImageNet stem would leave 1 px at the end).
From 128 px up (stem="auto") the ImageNet stem (7x7/2 conv + 3x3/2 max pool) is used instead.
"""
from __future__ import annotations

from torch import Tensor, nn

from cnnkit.models import MODELS
from cnnkit.models.layers import check_args, conv_bn_relu, kaiming_init, pooled_head, use_imagenet_stem

WIDTHS = (64, 128, 256, 512)


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1) -> nn.Sequential:
    """Conv + BN without the ReLU: the last layer of a residual branch, added before activating."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(c_out))


def _shortcut(c_in: int, c_out: int, stride: int) -> nn.Module:
    """Identity when shapes match, else a strided 1x1 projection (option B of the paper)."""
    return nn.Identity() if stride == 1 and c_in == c_out else _conv_bn(c_in, c_out, 1, stride)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int) -> None:
        super().__init__()
        self.branch = nn.Sequential(conv_bn_relu(c_in, planes, 3, stride), _conv_bn(planes, planes, 3))
        self.shortcut = _shortcut(c_in, planes, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.branch(x) + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int) -> None:
        super().__init__()
        out = planes * self.expansion
        self.branch = nn.Sequential(
            conv_bn_relu(c_in, planes, 1), conv_bn_relu(planes, planes, 3, stride), _conv_bn(planes, out, 1),
        )
        self.shortcut = _shortcut(c_in, out, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.branch(x) + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, block: type[BasicBlock] | type[Bottleneck], depths: tuple[int, ...],
                 num_classes: int, in_channels: int, imagenet_stem: bool, zero_init_residual: bool) -> None:
        super().__init__()
        if imagenet_stem:
            self.stem = nn.Sequential(conv_bn_relu(in_channels, 64, 7, stride=2), nn.MaxPool2d(3, 2, 1))
        else:
            self.stem = conv_bn_relu(in_channels, 64, 3)
        stages: list[nn.Module] = []
        channels = 64
        for i, (planes, depth) in enumerate(zip(WIDTHS, depths)):
            blocks = []
            for j in range(depth):
                # The first block of every stage but the first halves the map.
                blocks.append(block(channels, planes, 2 if (i > 0 and j == 0) else 1))
                channels = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head = pooled_head(channels, num_classes)
        kaiming_init(self)
        if zero_init_residual:
            # Each block starts as the identity (Goyal et al., 2017): helps large-batch training.
            for module in self.modules():
                if isinstance(module, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(module.branch[-1][1].weight)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.stages(self.stem(x)))


def _build(name: str, block: type[BasicBlock] | type[Bottleneck], depths: tuple[int, ...], num_classes: int,
           in_channels: int, image_size: int, stem: str, zero_init_residual: bool) -> nn.Module:
    check_args(name, num_classes, in_channels, image_size)
    imagenet = use_imagenet_stem(name, stem, image_size)
    return ResNet(block, depths, num_classes, in_channels, imagenet, bool(zero_init_residual))


@MODELS.register("resnet18")
def resnet18(num_classes: int, in_channels: int, image_size: int, *,
             stem: str = "auto", zero_init_residual: bool = False) -> nn.Module:
    """ResNet-18: basic blocks [2, 2, 2, 2], CIFAR-style 3x3 stem for small inputs."""
    return _build("resnet18", BasicBlock, (2, 2, 2, 2), num_classes, in_channels, image_size, stem, zero_init_residual)


@MODELS.register("resnet34")
def resnet34(num_classes: int, in_channels: int, image_size: int, *,
             stem: str = "auto", zero_init_residual: bool = False) -> nn.Module:
    """ResNet-34: basic blocks [3, 4, 6, 3], CIFAR-style 3x3 stem for small inputs."""
    return _build("resnet34", BasicBlock, (3, 4, 6, 3), num_classes, in_channels, image_size, stem, zero_init_residual)


@MODELS.register("resnet50")
def resnet50(num_classes: int, in_channels: int, image_size: int, *,
             stem: str = "auto", zero_init_residual: bool = False) -> nn.Module:
    """ResNet-50: bottleneck blocks [3, 4, 6, 3] (v1.5), CIFAR-style 3x3 stem for small inputs."""
    return _build("resnet50", Bottleneck, (3, 4, 6, 3), num_classes, in_channels, image_size, stem, zero_init_residual)
