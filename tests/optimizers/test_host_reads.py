"""Host reads inside `optimizer.step`: constant in the number of layers, for every optimizer.

On a GPU every read of a tensor's value on the host (`.item()`, `float(t)`, `if t:`, ...)
waits for all queued kernels, so a per-layer read serialises the step. These tests count the
calls of torch.Tensor's reading methods while one step runs, on MLPs of two depths, for every
row of the conformance table (tests/optimizers/conformance.py):

    plain step     (no statistics, no inverses)  at most 1 read: the loss finiteness check of
                   optimizers.base.call_closure, which the runner's divergence check relies
                   on (a non-finite loss returns before any update)
    refresh step   (statistics and inverses)     the same count at both depths, at most
                   REFRESH_BOUND: one read per batched linear-algebra call, not per layer
                   (K-BFGS's second pass checks its loss too; the likelihoods draw sampled
                   labels without torch.distributions' argument check, which would read)

torch.optim's per-parameter `step` counters (Adam's) live on the CPU, so their reads are
not counted (host_side_steps).

Shampoo's coupled Newton roots read once per iteration (whether any matrix is still
iterating); with identical parallel layers every matrix takes the same iterations, so the
count is the same at both widths too.
"""

from __future__ import annotations

import inspect
from itertools import pairwise
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from optimizers.base import SCHEDULE, CurvatureOptimizer
from runners.bench.timing import step_kinds
from tests.optimizers.conformance import OPTIMIZERS, OptimizerInfo
from tests.optimizers.host_reads import counting_reads
from tests.optimizers.problems import CLASSES, closure_for, tiny_batches

PLAIN_BOUND = 1  # call_closure's loss finiteness check
REFRESH_BOUND = 4
DEPTHS = (3, 6)  # Linear layers
WIDTH = 5


def mlp(depth: int, seed: int = 0) -> nn.Module:
    """Flatten, then `depth` float32 Linear layers of width WIDTH with ReLUs between."""
    torch.manual_seed(seed)
    widths = [25] + [WIDTH] * (depth - 1) + [CLASSES]
    layers: list[nn.Module] = [nn.Flatten()]
    for index, (d_in, d_out) in enumerate(pairwise(widths)):
        layers += [nn.Linear(d_in, d_out)] + ([nn.ReLU()] if index < depth - 1 else [])
    return nn.Sequential(*layers)


class ParallelIdentical(nn.Module):
    """x -> sum_k Linear_k(flatten(x)) over `branches` copies of one Linear layer: every
    branch has the same gradient, so every statistic (and every root's iterations) is equal."""

    def __init__(self, branches: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        first = nn.Linear(25, CLASSES)
        self.branches = nn.ModuleList(nn.Linear(25, CLASSES) for _ in range(branches))
        with torch.no_grad():
            for branch in self.branches:
                branch.load_state_dict(first.state_dict())

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(1)
        return torch.stack([branch(x) for branch in self.branches]).sum(dim=0)


def host_side_steps(optimizer: torch.optim.Optimizer) -> frozenset[int]:
    """torch.optim's per-parameter `step` counters (Adam's): torch keeps them on the CPU
    unless capturable or fused, so that reading them (`.item()` per parameter) synchronises
    nothing; they are not device reads."""
    if isinstance(optimizer, CurvatureOptimizer):
        return frozenset()
    return frozenset(
        id(state["step"])
        for state in optimizer.state.values()
        if isinstance(state.get("step"), Tensor) and state["step"].device.type == "cpu"
    )


def schedule_overrides(info: OptimizerInfo) -> dict[str, Any]:
    """A schedule with plain steps: statistics every 2 steps, inverses every 4 (TENGraD has
    inverse_every only: statistics and inverses every 2)."""
    parameters = inspect.signature(info.cls).parameters
    if "curvature_every" in parameters:
        return {"curvature_every": 2, "inverse_every": 4}
    if "inverse_every" in parameters:
        return {"inverse_every": 2}
    return {}


def reads_per_kind(
    info: OptimizerInfo, model: nn.Module, monkeypatch: pytest.MonkeyPatch, **settings: Any
) -> dict[str, int]:
    """{step kind: reads in one step of that kind} after a few warm-up steps (every buffer,
    factor and first inverse exists), kinds as the benchmark's (runners.bench.timing)."""
    optimizer = info.build(model, **schedule_overrides(info), **settings)
    batches = tiny_batches(6, batch_size=8, dtype=torch.float32)
    for batch in batches[:4]:
        optimizer.step(closure_for(model, batch))
    reads = {}
    for kind, (counter, _) in step_kinds(optimizer).items():
        if SCHEDULE in optimizer.state:
            optimizer.state[SCHEDULE]["step"] = counter
        closure = closure_for(model, batches[5])
        torch.manual_seed(0)
        with counting_reads(monkeypatch, host_side_steps(optimizer)) as count:
            optimizer.step(closure)
        reads[kind] = count[0]
    return reads


@pytest.mark.parametrize("info", OPTIMIZERS, ids=[info.name for info in OPTIMIZERS])
def test_host_reads_do_not_grow_with_depth(
    info: OptimizerInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    shallow, deep = (reads_per_kind(info, mlp(depth), monkeypatch) for depth in DEPTHS)
    print(f"{info.name}: {DEPTHS[0]} layers {shallow}, {DEPTHS[1]} layers {deep}")
    assert shallow == deep, f"host reads grow with depth: {shallow} vs {deep}"
    if "plain" in deep:
        assert deep["plain"] <= PLAIN_BOUND
    assert all(count <= REFRESH_BOUND for count in deep.values()), deep


@pytest.mark.parametrize("root_method", ["eigh", "coupled_newton"])
def test_shampoo_roots_read_once_per_call(
    root_method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Identical layers take the same coupled Newton iterations: the count may depend on
    them, not on the number of layers; eigh reads a constant number of times."""
    (info,) = (info for info in OPTIMIZERS if info.name == "shampoo")
    few, many = (
        reads_per_kind(info, ParallelIdentical(branches), monkeypatch, root_method=root_method)
        for branches in (2, 5)
    )
    print(f"shampoo ({root_method}): 2 branches {few}, 5 branches {many}")
    assert few == many
    assert many["plain"] <= PLAIN_BOUND
    bound = REFRESH_BOUND + (100 if root_method == "coupled_newton" else 0)
    assert many["refresh"] <= bound
