"""Synthetic data for tests and quick checks: learnable labels, reconstructable inputs.

Inputs are uniform in [0, 1] (valid Bernoulli targets, so autoencoders can train on them);
labels are the argmax of a fixed random linear "teacher" applied to the centred inputs, so a
classifier can fit them. Everything is drawn from a generator seeded with `seed` alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from data.tensors import Split, Splits


def make_synthetic(
    input_shape: Sequence[int], num_classes: int | None, train_size: int, test_size: int, seed: int
) -> Splits:
    generator = torch.Generator().manual_seed(seed)
    total = train_size + test_size
    inputs = torch.rand(total, *input_shape, generator=generator)
    labels = None
    if num_classes is not None:
        teacher = torch.randn(math.prod(input_shape), num_classes, generator=generator)
        labels = ((inputs.flatten(1) - 0.5) @ teacher).argmax(dim=1)

    def rows(start: int, stop: int) -> Split:
        return Split(inputs[start:stop], None if labels is None else labels[start:stop])

    return Splits(rows(0, train_size), rows(train_size, total))
