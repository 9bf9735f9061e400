"""Data held as tensors on the training device, and shuffled mini-batches drawn from them.

The papers' data sets are small (at most a few hundred MB as float32), so each split lives on
the training device and a mini-batch is an index into it: no loader processes and no
host-to-device copies inside the timed training loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Split:
    """One split: inputs (N, *input_shape) float32; labels (N,) int64, or None without labels."""

    inputs: Tensor
    labels: Tensor | None

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def head(self, size: int | None) -> Split:
        """The first `size` examples (all when None), as views."""
        if size is None or size >= len(self):
            return self
        labels = None if self.labels is None else self.labels[:size]
        return Split(self.inputs[:size], labels)

    def to(self, device: torch.device) -> Split:
        labels = None if self.labels is None else self.labels.to(device)
        return Split(self.inputs.to(device), labels)


@dataclass
class Splits:
    train: Split
    test: Split


class ShuffledBatches:
    """Mini-batches of (inputs, targets) in a fresh random order every epoch.

    The order of epoch e is a permutation drawn from a generator seeded with (seed, e) alone,
    so it is reproducible and a run resumed at any epoch boundary draws the same batches as
    an uninterrupted one. The last incomplete batch is dropped (`drop_last`), so every step
    sees exactly `batch_size` examples.
    """

    def __init__(self, inputs: Tensor, targets: Tensor, batch_size: int, seed: int) -> None:
        if batch_size < 1:
            raise ValueError(f"Invalid batch size: {batch_size}")
        if batch_size > inputs.shape[0]:
            raise ValueError(
                f"batch size {batch_size} is larger than the {inputs.shape[0]} training examples"
            )
        self.inputs, self.targets = inputs, targets
        self.batch_size, self.seed = batch_size, seed
        self.steps_per_epoch = inputs.shape[0] // batch_size

    def permutation(self, epoch: int) -> Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(self.inputs.shape[0], generator=generator)
        return order.to(self.inputs.device)

    def batch(self, permutation: Tensor, index: int) -> tuple[Tensor, Tensor]:
        """The index-th mini-batch of an epoch's permutation."""
        rows = permutation[index * self.batch_size : (index + 1) * self.batch_size]
        return self.inputs[rows], self.targets[rows]
