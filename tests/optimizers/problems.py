"""Tiny networks and data for the optimizer tests, and the runner's step protocol around them.

The sampled Fisher draws labels from torch's global random state, so `take_steps` seeds it
before every step: two runs over the same batches with the same seed see the same samples.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.likelihoods import CrossEntropy, Likelihood
from runners.closure import StepClosure

IMAGE_SHAPE = (1, 5, 5)
CLASSES = 4


def tiny_mlp(seed: int = 0, dtype: torch.dtype = torch.float64) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(25, 6), nn.ReLU(), nn.Linear(6, CLASSES)).to(dtype)


def tiny_convnet(seed: int = 0, dtype: torch.dtype = torch.float64) -> nn.Module:
    """Conv (with and without bias), in-place ReLU, flatten, Linear: every kind of layer the
    curvature methods precondition, small enough for dense reference computations."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(3, 2, 2, stride=2, bias=False),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(2 * 2 * 2, CLASSES),
    ).to(dtype)


def tiny_batches(
    count: int, batch_size: int = 16, seed: int = 0, dtype: torch.dtype = torch.float64
) -> list[tuple[Tensor, Tensor]]:
    """Random images with labels from a fixed random linear teacher (learnable)."""
    generator = torch.Generator().manual_seed(seed)
    teacher = torch.randn(25, CLASSES, generator=generator, dtype=dtype)
    batches = []
    for _ in range(count):
        x = torch.randn(batch_size, *IMAGE_SHAPE, generator=generator, dtype=dtype)
        batches.append((x, (x.flatten(1) @ teacher).argmax(dim=1)))
    return batches


def closure_for(
    model: nn.Module, batch: tuple[Tensor, Tensor], likelihood: Likelihood | None = None
) -> StepClosure:
    inputs, targets = batch
    return StepClosure(model, likelihood or CrossEntropy(), inputs, targets)


def take_steps(
    optimizer: torch.optim.Optimizer,
    model: nn.Module,
    batches: list[tuple[Tensor, Tensor]],
    seed: int = 0,
) -> list[float]:
    """One optimizer.step per batch, as the runner does; the returned losses."""
    losses = []
    for index, batch in enumerate(batches):
        torch.manual_seed(seed + index)
        losses.append(float(optimizer.step(closure_for(model, batch))))
    return losses


def full_loss(model: nn.Module, batches: list[tuple[Tensor, Tensor]]) -> float:
    with torch.no_grad():
        inputs = torch.cat([x for x, _ in batches])
        targets = torch.cat([y for _, y in batches])
        return float(CrossEntropy().loss(model(inputs), targets))
