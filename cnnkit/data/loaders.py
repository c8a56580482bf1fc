"""Batch iterators over in-memory (optionally device-resident) uint8 tensors.

Shuffling is a ``randperm`` from a generator seeded by (seed, epoch), so the order of any epoch
can be reproduced without saving iterator state, which makes resuming a killed run exact.
Under torchrun each process takes every world-th index of the same permutation.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from cnnkit.data.dataset import ImageSet


def epoch_generator(seed: int, epoch: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator whose stream depends only on (seed, epoch): the same on a resumed run."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed * 1_000_003 + epoch)
    return gen


@dataclass
class DeviceData:
    """One split moved to the device once (uint8: 4x smaller than float)."""

    images: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def from_set(cls, split: ImageSet, device: torch.device) -> DeviceData:
        pin = device.type == "cuda"
        images = split.images.pin_memory() if pin else split.images
        return cls(images.to(device, non_blocking=pin), split.labels.to(device, non_blocking=pin))

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def train_batches(
    data: DeviceData,
    batch_size: int,
    gen: torch.Generator,
    rank: int = 0,
    world: int = 1,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled batches; the last partial batch is dropped (BatchNorm dislikes batches of 1)."""
    for idx in train_index_batches(data, batch_size, gen, rank, world):
        yield data.images[idx], data.labels[idx]


def train_index_batches(data: DeviceData, batch_size: int, gen: torch.Generator, rank: int = 0,
                        world: int = 1) -> Iterator[torch.Tensor]:
    """The dataset indices of ``train_batches``' batches (for per-image choices such as alternating flips)."""
    order = torch.randperm(len(data), generator=gen, device=gen.device).to(data.labels.device)
    # Equal shares for every process: DDP hangs if one process takes an extra step.
    order = order[: (len(order) // world) * world][rank::world]
    steps = len(order) // batch_size
    for i in range(steps):
        yield order[i * batch_size : (i + 1) * batch_size]


def steps_per_epoch(n: int, batch_size: int, world: int = 1) -> int:
    return (n // world) // batch_size if n >= world else 0
