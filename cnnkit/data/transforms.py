"""Normalization and augmentation on whole batches with tensor ops (no per-image PIL work).

A batch arrives as uint8 (B, C, H, W) on the training device; ``BatchPipeline`` turns it into a
normalized float batch, applying the augmentation preset with a caller-supplied generator so
that a run (and a resumed run) draws exactly the same random numbers.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentPolicy:
    """What to do to a training batch; all zero means no augmentation."""

    translate: int = 0  # max shift in pixels (random crop of a zero-padded image)
    hflip: bool = False
    rotate: float = 0.0  # max rotation in degrees
    scale: float = 0.0  # max relative zoom in or out
    erase: float = 0.0  # probability of random erasing (one rectangle per image)
    # "alternate": the loop passes each batch's flips (every image flipped on every other epoch),
    # which covers both views of each image in any two epochs instead of leaving it to chance.
    flip_mode: str = "random"
    # "reflect": shifted-in borders mirror the image instead of being black, so the net never
    # learns black borders that test images do not have.
    pad_mode: str = "zeros"

    @property
    def active(self) -> bool:
        return bool(self.translate or self.hflip or self.rotate or self.scale or self.erase)


# Presets by dataset kind: digits must not be flipped (a mirrored 2 is not a 2); photos may be.
PRESETS: dict[tuple[str, str], AugmentPolicy] = {
    ("digits", "none"): AugmentPolicy(),
    ("digits", "light"): AugmentPolicy(translate=2),
    ("digits", "auto"): AugmentPolicy(translate=2),
    ("digits", "strong"): AugmentPolicy(translate=2, rotate=10.0, scale=0.1, erase=0.25),
    ("natural", "none"): AugmentPolicy(),
    ("natural", "light"): AugmentPolicy(hflip=True),
    ("natural", "auto"): AugmentPolicy(translate=2, hflip=True),
    ("natural", "strong"): AugmentPolicy(translate=4, hflip=True, erase=0.5),
}


def policy_for(kind: str, preset: str, image_size: int) -> AugmentPolicy:
    """The preset for a dataset kind; translations scale with the image (4 px at 32 = 1/8)."""
    base = PRESETS[(kind, preset)]
    if base.translate and image_size > 32:
        base = AugmentPolicy(**{**asdict(base), "translate": max(1, round(base.translate * image_size / 32))})
    return base


@dataclass(frozen=True)
class Normalization:
    """Per-channel mean and std on the 0..1 scale, computed from the training split."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def from_images(cls, images: torch.Tensor, max_images: int = 20000) -> Normalization:
        sample = images[:max_images].to(torch.float64) / 255.0
        mean = sample.mean(dim=(0, 2, 3))
        std = sample.std(dim=(0, 2, 3)).clamp_min(1e-3)
        return cls(tuple(round(float(m), 6) for m in mean), tuple(round(float(s), 6) for s in std))

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        return (x - mean) / std


def random_translate(x: torch.Tensor, pad: int, gen: torch.Generator, mode: str = "zeros") -> torch.Tensor:
    """Random crop of the padded batch (zeros or ``mode="reflect"``): every image shifted by up to ``pad`` pixels."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad)) if mode == "zeros" else F.pad(x, (pad, pad, pad, pad), mode=mode)
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen, device=gen.device).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen, device=gen.device).to(x.device)
    rows = (dy.view(b, 1) + torch.arange(h, device=x.device)).view(b, 1, h, 1)
    cols = (dx.view(b, 1) + torch.arange(w, device=x.device)).view(b, 1, 1, w)
    # Gather rows then columns: two cheap index ops instead of a per-image Python loop.
    out = padded.gather(2, rows.expand(b, x.shape[1], h, padded.shape[3]))
    return out.gather(3, cols.expand(b, x.shape[1], h, w))


def random_hflip(x: torch.Tensor, gen: torch.Generator, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mirror a random half of the batch, or the images where ``mask`` (bool, one per image) is set."""
    if mask is None:
        mask = torch.rand(x.shape[0], generator=gen, device=gen.device).to(x.device) < 0.5
    return torch.where(mask.to(x.device).view(-1, 1, 1, 1), x.flip(-1), x)


def alternating_flip_bits(n: int, seed: int) -> torch.Tensor:
    """One fixed random bit per training image; image i is flipped in epoch e iff bit_i xor (e odd)."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + 7919)
    return torch.rand(n, generator=gen) < 0.5


def alternating_flips(bits: torch.Tensor, indices: torch.Tensor, epoch: int) -> torch.Tensor:
    """The flip mask of a batch (its images' dataset ``indices``) in ``epoch``."""
    return bits.to(indices.device)[indices] ^ bool(epoch % 2)


def random_affine(x: torch.Tensor, degrees: float, scale: float, gen: torch.Generator) -> torch.Tensor:
    """Rotate by up to ``degrees`` and zoom by up to ``scale`` around the centre (bilinear)."""
    b = x.shape[0]
    u = torch.rand(b, 2, generator=gen, device=gen.device).to(x.device, x.dtype) * 2 - 1
    angle = u[:, 0] * math.radians(degrees)
    zoom = 1.0 + u[:, 1] * scale
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    zeros = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zeros], 1), torch.stack([sin, cos, zeros], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_erase(x: torch.Tensor, prob: float, gen: torch.Generator, area: tuple[float, float] = (0.02, 0.25)) -> torch.Tensor:
    """Zero one random rectangle in a ``prob`` fraction of the images (applied after normalization)."""
    b, _, h, w = x.shape
    r = torch.rand(b, 5, generator=gen, device=gen.device).to(x.device)
    frac = area[0] + r[:, 0] * (area[1] - area[0])
    aspect = torch.exp((r[:, 1] * 2 - 1) * math.log(3.0))
    eh = (torch.sqrt(frac * aspect) * h).clamp(1, h).long()
    ew = (torch.sqrt(frac / aspect) * w).clamp(1, w).long()
    top = (r[:, 2] * (h - eh + 1)).long()
    left = (r[:, 3] * (w - ew + 1)).long()
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (ys >= top.view(b, 1, 1)) & (ys < (top + eh).view(b, 1, 1)) & (xs >= left.view(b, 1, 1)) & (xs < (left + ew).view(b, 1, 1))
    inside &= (r[:, 4] < prob).view(b, 1, 1)
    return x.masked_fill(inside.unsqueeze(1), 0.0)


@dataclass(frozen=True)
class BatchPipeline:
    """uint8 batch -> float batch at the model's input size, normalized, optionally augmented."""

    norm: Normalization
    input_size: int
    policy: AugmentPolicy = AugmentPolicy()
    channels_last: bool = False

    def __call__(self, images: torch.Tensor, gen: torch.Generator | None = None,
                 flips: torch.Tensor | None = None) -> torch.Tensor:
        """``flips``: this batch's flip mask when the policy's flips are chosen by the caller
        (``flip_mode="alternate"``); otherwise flips are drawn from ``gen``."""
        x = images.float().div_(255.0)
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", antialias=True, align_corners=False)
        if gen is not None and self.policy.active:
            x = apply_geometric(x, self.policy, gen, flips)
        x = self.norm.apply(x)
        if gen is not None and self.policy.erase:
            x = random_erase(x, self.policy.erase, gen)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def apply_geometric(x: torch.Tensor, p: AugmentPolicy, gen: torch.Generator, flips: torch.Tensor | None = None) -> torch.Tensor:
    """The policy's rotation/zoom, translation and flip, in that order (erasing is separate: the
    pipeline applies it after normalization, so erased pixels are the mean)."""
    if p.rotate or p.scale:
        x = random_affine(x, p.rotate, p.scale, gen)
    if p.translate:
        x = random_translate(x, p.translate, gen, p.pad_mode)
    if p.hflip:
        x = random_hflip(x, gen, flips)
    return x


def pipelines_for(pre: dict, augment: str = "none", channels_last: bool = False, flip: str = "random",
                  pad: str = "zeros") -> tuple[BatchPipeline, BatchPipeline]:
    """(train, eval) pipelines from a run's stored preprocessing record (model.json "preprocess");
    ``flip``/``pad`` set how the preset's flips are chosen and its translations padded."""
    norm = Normalization(tuple(pre["mean"]), tuple(pre["std"]))
    policy = replace(policy_for(pre["kind"], augment, pre["input_size"]), flip_mode=flip, pad_mode=pad)
    return (
        BatchPipeline(norm, pre["input_size"], policy, channels_last),
        BatchPipeline(norm, pre["input_size"], channels_last=channels_last),
    )
