"""Data held as tensors on the training device, and shuffled mini-batches drawn from them.

The papers' data sets are small (at most a few hundred MB as float32), so each split lives on
the training device and a mini-batch is an index into it: no loader processes and no
host-to-device copies inside the timed training loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

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

    def take(self, indices: Tensor) -> Split:
        """The examples at `indices` (a copy), in that order."""
        labels = None if self.labels is None else self.labels[indices]
        return Split(self.inputs[indices], labels)


@dataclass
class Splits:
    train: Split
    test: Split
    validation: Split | None = None  # held out of the training split (data.validation)


class BatchAugmentation(Protocol):
    """A random transform of training mini-batches, e.g. data.augment.RandomCropFlip.

    `draw` gives the random parameters of `count` examples, shape (count, ...), on the CPU,
    from the generator of the epoch; `apply` transforms a batch on its device, given the draws
    of its rows moved to that device.
    """

    def draw(self, count: int, generator: torch.Generator) -> Tensor: ...

    def apply(self, inputs: Tensor, draws: Tensor) -> Tensor: ...


class ShuffledBatches:
    """Mini-batches of (inputs, targets) in a fresh random order every epoch.

    The order of epoch e is a permutation drawn from a CPU generator seeded with (seed, e)
    alone; with an `augmentation`, the same generator then draws every example's augmentation
    parameters for the epoch, which are applied to each batch on the training device. So the
    batches are reproducible, identical on CPU and GPU, independent of torch's global random
    state, and a run resumed at any epoch boundary draws the same batches as an uninterrupted
    one. The last incomplete batch is dropped (`drop_last`), so every step sees exactly
    `batch_size` examples.
    """

    def __init__(
        self,
        inputs: Tensor,
        targets: Tensor,
        batch_size: int,
        seed: int,
        augmentation: BatchAugmentation | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"Invalid batch size: {batch_size}")
        if batch_size > inputs.shape[0]:
            raise ValueError(
                f"batch size {batch_size} is larger than the {inputs.shape[0]} training examples"
            )
        self.inputs, self.targets = inputs, targets
        self.batch_size, self.seed = batch_size, seed
        self.augmentation = augmentation
        self.steps_per_epoch = inputs.shape[0] // batch_size

    def epoch(self, epoch: int) -> EpochBatches:
        """The batches of one epoch (epoch -1 is the warm start's own order)."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        count = self.inputs.shape[0]
        order = torch.randperm(count, generator=generator).to(self.inputs.device)
        draws = None
        if self.augmentation is not None:
            draws = self.augmentation.draw(count, generator).to(self.inputs.device)
        return EpochBatches(self, order, draws)


@dataclass
class EpochBatches:
    """One epoch's order (and augmentation draws, indexed by position in that order)."""

    batches: ShuffledBatches
    order: Tensor
    draws: Tensor | None

    def batch(self, index: int) -> tuple[Tensor, Tensor]:
        """The index-th mini-batch of the epoch, augmented when the data set says so."""
        size = self.batches.batch_size
        positions = slice(index * size, (index + 1) * size)
        rows = self.order[positions]
        inputs = self.batches.inputs[rows]
        if self.draws is not None:
            assert self.batches.augmentation is not None
            inputs = self.batches.augmentation.apply(inputs, self.draws[positions])
        return inputs, self.batches.targets[rows]
