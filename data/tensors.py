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


def rank_slice(size: int, rank: int, world_size: int) -> slice:
    """Rank `rank`'s contiguous part of `size` items shared by `world_size` ranks, sized as
    np.array_split sizes them (the first `size % world_size` ranks one item more), so that the
    parts of ranks 0, 1, ... are consecutive and make up all `size` items."""
    base, extra = divmod(size, world_size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


class ShuffledBatches:
    """Mini-batches of (inputs, targets) in a fresh random order every epoch.

    The order of epoch e is a permutation drawn from a CPU generator seeded with (seed, e)
    alone; with an `augmentation`, the same generator then draws every example's augmentation
    parameters for the epoch, which are applied to each batch on the training device. So the
    batches are reproducible, identical on CPU and GPU, independent of torch's global random
    state, and a run resumed at any epoch boundary draws the same batches as an uninterrupted
    one. The last incomplete batch is dropped (`drop_last`), so every step sees exactly
    `batch_size` examples.

    In a data-parallel run (`world_size` > 1) `batch_size` is the global mini-batch: every
    rank draws the same order, and rank `rank` gets its contiguous slice of each global batch
    (`rank_slice`), so the global batches, and with them the method, are those of one process
    whatever the number of ranks.
    """

    def __init__(
        self,
        inputs: Tensor,
        targets: Tensor,
        batch_size: int,
        seed: int,
        augmentation: BatchAugmentation | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"Invalid batch size: {batch_size}")
        if batch_size > inputs.shape[0]:
            raise ValueError(
                f"batch size {batch_size} is larger than the {inputs.shape[0]} training examples"
            )
        self.inputs, self.targets = inputs, targets
        self.batch_size, self.seed = batch_size, seed
        if batch_size < world_size:
            raise ValueError(
                f"batch size {batch_size} is smaller than the {world_size} processes: "
                "each needs at least one example of every mini-batch"
            )
        self.augmentation = augmentation
        self.steps_per_epoch = inputs.shape[0] // batch_size
        self.rank, self.world_size = rank, world_size
        # this rank's rows within each global batch
        self.part = rank_slice(batch_size, rank, world_size)

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
        """The index-th mini-batch of the epoch (this rank's slice of it), augmented when the
        data set says so."""
        size, part = self.batches.batch_size, self.batches.part
        positions = slice(index * size + part.start, index * size + part.stop)
        rows = self.order[positions]
        inputs = self.batches.inputs[rows]
        if self.draws is not None:
            assert self.batches.augmentation is not None
            inputs = self.batches.augmentation.apply(inputs, self.draws[positions])
        return inputs, self.batches.targets[rows]
