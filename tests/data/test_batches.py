"""Shuffled mini-batches with augmentation: a function of (seed, epoch, step) alone."""

from __future__ import annotations

import torch

from data.augment import RandomCropFlip
from data.tensors import ShuffledBatches


def make_batches(seed: int = 0, augment: bool = True) -> ShuffledBatches:
    inputs = torch.rand(40, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    targets = torch.arange(40)
    augmentation = RandomCropFlip(2, [0.0, 0.0, 0.0]) if augment else None
    return ShuffledBatches(inputs, targets, 16, seed=seed, augmentation=augmentation)


def test_order_without_augmentation_is_the_seeded_permutation() -> None:
    """Unchanged from before augmentation existed: runs recorded earlier keep their batches."""
    batches = make_batches(seed=3, augment=False)
    expected = torch.randperm(40, generator=torch.Generator().manual_seed(3 * 1_000_003 + 2))
    inputs, targets = batches.epoch(2).batch(1)
    torch.testing.assert_close(targets, expected[16:32])
    torch.testing.assert_close(inputs, batches.inputs[expected[16:32]])
    assert batches.steps_per_epoch == 2  # drop_last


def test_augmented_batches_are_reproducible_and_leave_global_rng_alone() -> None:
    state = torch.get_rng_state()
    first = [make_batches().epoch(e).batch(i) for e in (0, 1) for i in (0, 1)]
    again = [make_batches().epoch(e).batch(i) for e in (0, 1) for i in (0, 1)]
    assert torch.equal(torch.get_rng_state(), state)
    for (x1, y1), (x2, y2) in zip(first, again, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(first[0][0], first[2][0])  # epoch 1 differs from epoch 0


def test_augmentation_uses_the_draws_of_each_row() -> None:
    batches = make_batches()
    epoch = batches.epoch(5)
    inputs, targets = epoch.batch(1)
    draws = epoch.draws[16:32]
    expected = batches.augmentation.apply(batches.inputs[targets], draws)
    torch.testing.assert_close(inputs, expected)
    assert not torch.equal(inputs, batches.inputs[targets])  # something was augmented
