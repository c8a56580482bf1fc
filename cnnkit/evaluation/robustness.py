"""Controlled corruptions of a test set, so robustness is a number: batched tensor ops, seeded.

A variant maps uint8 images (N, C, H, W) to uint8 images of the same shape *before* a run's own
preprocessing, so every run compared on a variant sees exactly the same corrupted pixels. The
random draws come from one generator seeded by the caller and are made in fixed-size chunks,
so the result depends only on (images, variant, seed).

Variants are written ``name`` or ``name:value`` (``noise:0.2``, ``rotate:30``):

==========  ===========================================================  ==============
name        what happens to every image                                  value (default)
==========  ===========================================================  ==============
clean       nothing                                                      -
augmented   the "strong" training augmentation preset for the data kind  -
noise       additive Gaussian noise, std on the 0..1 pixel scale         std (0.1)
blur        Gaussian blur                                                sigma px (1.0)
rotate      rotation by exactly +/- value degrees (random sign)          degrees (15)
shift       translation by value px in one of 8 directions, zero fill    px (side / 10)
contrast    pixel values pulled towards the image mean by this factor    factor (0.5)
occlude     a black square covering this fraction of the image area      fraction (0.1)
==========  ===========================================================  ==============
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cnnkit.errors import CnnkitError

CHUNK = 2048
REPORT_VARIANTS = ("clean", "augmented", "noise", "blur", "rotate", "shift")


@dataclass(frozen=True)
class Variant:
    name: str
    value: float | None = None  # None: the default, which may depend on the image size

    @property
    def key(self) -> str:
        """A file-name-safe identity: ``noise-0.2``, or the bare name for the default value."""
        return self.name if self.value is None else f"{self.name}-{self.value:g}"

    def label(self) -> str:
        return self.name if self.value is None else f"{self.name} {self.value:g}"


def _affine(x: torch.Tensor, angle: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor, mode: str) -> torch.Tensor:
    """Rotate each image by ``angle`` radians and shift it by (tx, ty) pixels, zero fill."""
    _, _, h, w = x.shape
    cos, sin = torch.cos(angle), torch.sin(angle)
    # affine_grid maps output to input coordinates in [-1, 1]: a shift of +t px samples from -t.
    theta = torch.stack([torch.stack([cos, -sin, -2 * tx / w], 1), torch.stack([sin, cos, -2 * ty / h], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)


def _signs(n: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 2, (n,), generator=gen).float() * 2 - 1


def _noise(x: torch.Tensor, v: float, gen: torch.Generator, kind: str) -> torch.Tensor:
    return x + torch.randn(x.shape, generator=gen) * v


def _blur(x: torch.Tensor, v: float, gen: torch.Generator, kind: str) -> torch.Tensor:
    from torchvision.transforms.v2.functional import gaussian_blur

    if v <= 0:
        return x
    size = 2 * math.ceil(3 * v) + 1
    return gaussian_blur(x, [size, size], [v, v])


def _rotate(x: torch.Tensor, v: float, gen: torch.Generator, kind: str) -> torch.Tensor:
    angle = _signs(len(x), gen) * math.radians(v)
    zero = torch.zeros(len(x))
    return _affine(x, angle, zero, zero, "bilinear")


_DIRECTIONS = torch.tensor([(dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1) if dx or dy], dtype=torch.float32)


def _shift(x: torch.Tensor, v: float, gen: torch.Generator, kind: str) -> torch.Tensor:
    d = _DIRECTIONS[torch.randint(0, len(_DIRECTIONS), (len(x),), generator=gen)] * round(v)
    return _affine(x, torch.zeros(len(x)), d[:, 0], d[:, 1], "nearest")


def _contrast(x: torch.Tensor, v: float, gen: torch.Generator, kind: str) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return mean + (x - mean) * (1 - v)


def _occlude(x: torch.Tensor, v: float, gen: torch.Generator, kind: str) -> torch.Tensor:
    b, _, h, w = x.shape
    side_h, side_w = max(1, round(h * math.sqrt(v))), max(1, round(w * math.sqrt(v)))
    top = torch.randint(0, h - side_h + 1, (b,), generator=gen).view(b, 1, 1)
    left = torch.randint(0, w - side_w + 1, (b,), generator=gen).view(b, 1, 1)
    ys, xs = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
    inside = (ys >= top) & (ys < top + side_h) & (xs >= left) & (xs < left + side_w)
    return x.masked_fill(inside.unsqueeze(1), 0.0)


def _augmented(x: torch.Tensor, v: float, gen: torch.Generator, kind: str) -> torch.Tensor:
    """The training-time "strong" preset, applied in pixel space with the training code's own ops."""
    from cnnkit.data.transforms import apply_geometric, policy_for, random_erase

    p = policy_for(kind, "strong", x.shape[-1])
    x = apply_geometric(x, p, gen)
    return random_erase(x, p.erase, gen) if p.erase else x


Op = Callable[[torch.Tensor, float, torch.Generator, str], torch.Tensor]
# name -> (op, default value as a function of the image side); clean is handled before these.
_OPS: dict[str, tuple[Op, Callable[[int], float]]] = {
    "augmented": (_augmented, lambda side: 0.0),
    "noise": (_noise, lambda side: 0.1),
    "blur": (_blur, lambda side: 1.0),
    "rotate": (_rotate, lambda side: 15.0),
    "shift": (_shift, lambda side: max(1, round(side / 10))),
    "contrast": (_contrast, lambda side: 0.5),
    "occlude": (_occlude, lambda side: 0.1),
}
NAMES = ("clean", *_OPS)
_RANGES = {"noise": (0, 1), "blur": (0, 20), "rotate": (-180, 180), "shift": (0, 64), "contrast": (0, 1), "occlude": (0, 1)}


def parse_variants(text: str | None) -> list[Variant]:
    """``"clean,noise:0.2,rotate"`` (or ``"all"``) -> variants; unknown names or bad values are one-line errors."""
    out: list[Variant] = []
    text = ",".join(NAMES) if text == "all" else text
    for item in (text or "clean").split(","):
        name, _, raw = item.strip().partition(":")
        if name not in NAMES:
            raise CnnkitError(f"unknown variant {name!r}; variants: {', '.join(NAMES)}")
        value = None
        if raw:
            if name in ("clean", "augmented"):
                raise CnnkitError(f"variant {name!r} takes no value")
            try:
                value = float(raw)
            except ValueError:
                raise CnnkitError(f"variant {name}: value {raw!r} is not a number") from None
            lo, hi = _RANGES[name]
            if not lo <= value <= hi:
                raise CnnkitError(f"variant {name}: value must be in [{lo}, {hi}], got {value:g}")
        v = Variant(name, value)
        if v not in out:
            out.append(v)
    return out


def resolved_value(variant: Variant, side: int) -> float | None:
    """The value a variant uses on images of this side (its default when none was given)."""
    if variant.name == "clean":
        return None
    return variant.value if variant.value is not None else float(_OPS[variant.name][1](side))


_DESCRIBE = {
    "clean": "unchanged", "augmented": "the strong training augmentation preset of the data kind",
    "noise": "Gaussian noise, std {v:g} on the 0..1 scale", "blur": "Gaussian blur, sigma {v:g} px",
    "rotate": "rotated by exactly {v:g} degrees, either way", "shift": "shifted {v:g} px in one of 8 directions",
    "contrast": "contrast reduced by {v:.0%}", "occlude": "a black square over {v:.0%} of the image",
}


def describe(variant: Variant, side: int) -> str:
    """What a variant does to images of this side, in words: ``rotated by exactly 15 degrees...``."""
    v = resolved_value(variant, side)
    return _DESCRIBE[variant.name].format(v=v if v is not None else 0.0)


def apply_variant(images: torch.Tensor, variant: Variant, kind: str = "natural", seed: int = 0) -> torch.Tensor:
    """uint8 (N, C, H, W) -> the corrupted uint8 images, same shape, on the CPU; deterministic in ``seed``."""
    if variant.name == "clean":
        return images.cpu()
    op, _ = _OPS[variant.name]
    value = resolved_value(variant, images.shape[-1])
    gen = torch.Generator().manual_seed(seed)
    out = torch.empty_like(images, device="cpu")
    for start in range(0, len(images), CHUNK):
        x = images[start:start + CHUNK].cpu().float().div_(255.0)
        y = op(x, value, gen, kind)
        out[start:start + CHUNK] = y.clamp_(0, 1).mul_(255.0).round_().to(torch.uint8)
    return out


def tta_views(images: torch.Tensor, kind: str) -> list[torch.Tensor]:
    """Test-time augmentation views of a uint8 batch: the image, 1-px shifts in four directions,
    and for photos the mirror image (digits are never mirrored: a mirrored 2 is not a 2)."""
    x = images.float()
    n = len(x)
    zero = torch.zeros(n, device=x.device)
    views = [images]
    for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        shifted = _affine(x, zero, zero + dx, zero + dy, "nearest")
        views.append(shifted.round().clamp(0, 255).to(torch.uint8))
    if kind != "digits":
        views.append(images.flip(-1))
    return views
