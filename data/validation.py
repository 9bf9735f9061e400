"""The validation split: examples held out of the training split, for tuning.

Tuning must never see the test split (runners.tune ranks trials on the validation split), and
a comparison is fair only when every trial, optimizer and seed holds out the same examples. So
the held-out examples are drawn by a generator seeded with `dataset.split_seed` alone, never
the run's seed: a uniformly random subset of `validation_size` examples of the training split
(after `train_size` has cut it), and the run trains on the remaining ones, in their stored
order (the batches are shuffled by the run's seed later, data.tensors.ShuffledBatches).
"""

from __future__ import annotations

import torch

from data.tensors import Split, Splits


def hold_out_validation(splits: Splits, size: int, split_seed: int) -> Splits:
    """`splits` with `size` random training examples moved into `validation` (unchanged when
    size is 0). Raises ValueError when the training split cannot spare them."""
    if size == 0:
        return splits
    available = len(splits.train)
    if not 0 < size < available:
        raise ValueError(
            f"validation_size must be between 1 and {available - 1} (the training split has "
            f"{available} examples), got {size}"
        )
    generator = torch.Generator().manual_seed(split_seed)
    order = torch.randperm(available, generator=generator)
    held_out, kept = order[:size].sort().values, order[size:].sort().values
    train: Split = splits.train.take(kept)
    return Splits(train, splits.test, splits.train.take(held_out))
