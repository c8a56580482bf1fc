"""Building blocks shared by the model families, written once.

Also the argument checks every builder runs, so a bad size or class count is a one-line
CnnkitError rather than a shape error deep inside a forward pass.
"""
from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from cnnkit.errors import CnnkitError

# From this input size up, "auto" stems downsample as the ImageNet originals do: a 224x224
# image through a stride-1 small-input stem costs ~50x the FLOPs for no accuracy gain.
IMAGENET_STEM_FROM = 128
STEMS = ("auto", "small", "imagenet")


def check_args(name: str, num_classes: int, in_channels: int, image_size: int, min_size: int = 1) -> None:
    """Raise CnnkitError unless the three shape arguments are usable for model ``name``."""
    for arg, value, low in (("num_classes", num_classes, 1), ("in_channels", in_channels, 1),
                            ("image_size", image_size, min_size)):
        # bool is an int subclass; True as a class count is a mistake, not 1.
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise CnnkitError(f"model {name!r}: {arg} must be an integer >= {low}, got {value!r}")


def check_positive(name: str, **values: float) -> None:
    """Raise CnnkitError for a non-positive width-like option."""
    for arg, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise CnnkitError(f"model {name!r}: {arg} must be a positive number, got {value!r}")


def check_dropout(name: str, p: float) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        raise CnnkitError(f"model {name!r}: dropout must be in [0, 1), got {p!r}")
    return float(p)


def use_imagenet_stem(name: str, stem: str, image_size: int) -> bool:
    """Resolve a ``stem`` option ("auto", "small" or "imagenet") to a yes/no."""
    if stem not in STEMS:
        raise CnnkitError(f"model {name!r}: stem must be one of {', '.join(STEMS)}, got {stem!r}")
    if stem == "auto":
        return image_size >= IMAGENET_STEM_FROM
    return stem == "imagenet"


def scaled(channels: int, width: float) -> int:
    """Channel count times a width multiplier, never below 1."""
    return max(1, int(round(channels * width)))


def conv_bn_relu(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, bn: bool = True) -> nn.Sequential:
    """Conv (same padding) -> BatchNorm -> ReLU; the conv has no bias when BN follows (BN's shift replaces it)."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def pooled_head(c_in: int, num_classes: int, dropout: float = 0.0) -> nn.Sequential:
    """Global average pool -> flatten -> dropout -> linear: works for any feature-map size."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(c_in, num_classes))


def kaiming_init(model: nn.Module) -> nn.Module:
    """He-normal conv weights (fan_out, as torchvision's VGG/ResNet): PyTorch's default conv init
    shrinks activations layer by layer, which stalls a deep net that has no batch norm."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with its BatchNorms folded into the convs before them (the BN's
    scale and shift go into the conv's weights): one op instead of two per layer, same outputs up to
    float rounding. Folded: every Conv2d -> BatchNorm2d pair inside a Sequential, and whatever a module
    folds itself through its ``fold_batchnorm_()`` (airbench's blocks, whose BN sits behind a max pool).
    Other layouts are left as they are. Used for serving (torch backend) and for the ONNX export."""
    folded = copy.deepcopy(model).eval()
    for module in list(folded.modules()):
        if hasattr(module, "fold_batchnorm_"):
            module.fold_batchnorm_()
        if not isinstance(module, nn.Sequential):
            continue
        for i in range(len(module) - 1):
            conv, bn = module[i], module[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
                module[i] = fuse_conv_bn_eval(conv, bn)
                module[i + 1] = nn.Identity()
    return folded
