"""TNT against dense computations written here: the statistic from the sampled mini-batch
gradient (torch.func), the trace identities of the normalisation, and the direction as the
explicit Kronecker solve on a 3-way tensor."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad

from models.likelihoods import CrossEntropy
from optimizers.tnt import FACTORS, PRECONDITIONERS, TNT, trace_normalised
from runners.memory import optimizer_state_bytes
from tests.optimizers.problems import take_steps, tiny_batches, tiny_convnet, tiny_mlp

F64 = torch.float64


def tnt(model: nn.Module, **settings: object) -> TNT:
    return TNT(model.parameters(), **{"warm_start": False, **settings})


def unfolding(tensor: Tensor, mode: int) -> Tensor:
    return tensor.movedim(mode, 0).reshape(tensor.shape[mode], -1)


def order_k_view(p: Tensor) -> Tensor:
    return p.reshape(*p.shape[:2], -1) if p.dim() == 4 else p


def mini_batch_gradient(model: nn.Module, x: Tensor, labels: Tensor) -> dict[str, Tensor]:
    params = {name: p.detach() for name, p in model.named_parameters()}

    def loss(params: dict[str, Tensor]) -> Tensor:
        return F.cross_entropy(functional_call(model, params, (x,)), labels)

    return grad(loss)(params)


@pytest.mark.parametrize("fisher", ["sampled", "empirical"])
def test_statistics_are_gram_matrices_of_the_mini_batch_gradient(fisher: str) -> None:
    model = tiny_convnet()
    before = copy.deepcopy(model)
    optimizer = tnt(model, fisher=fisher)
    x, y = tiny_batches(1)[0]
    take_steps(optimizer, model, [(x, y)], seed=7)
    torch.manual_seed(7)  # the step's draw: TNT's statistic uses labels from the model
    labels = CrossEntropy().sample(before(x)) if fisher == "sampled" else y
    gradients = mini_batch_gradient(before, x, labels)
    for name, p in model.named_parameters():
        g_bar = order_k_view(gradients[name])
        for mode, factor in enumerate(optimizer.state[p][FACTORS]):
            unfolded = unfolding(g_bar, mode)
            torch.testing.assert_close(factor, unfolded @ unfolded.T)


def random_factors_of_equal_trace(dims: list[int], seed: int = 0) -> list[Tensor]:
    """Gram matrices of the mode unfoldings of one random tensor: all have trace ||G||^2."""
    tensor = torch.randn(*dims, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return [unfolding(tensor, mode) @ unfolding(tensor, mode).T for mode in range(len(dims))]


@pytest.mark.parametrize("dims", [[5], [4, 3], [2, 3, 4]])
def test_trace_normalisation_identities(dims: list[int]) -> None:
    factors = random_factors_of_equal_trace(dims)
    normalised = trace_normalised(factors)
    size, order = math.prod(dims), len(dims)
    c = (float(torch.trace(factors[0])) / size) ** (1 / order)
    for u, d in zip(normalised, dims, strict=True):
        assert math.isclose(float(torch.trace(u)) / d, c, rel_tol=1e-12)  # mean eigenvalue c
    kronecker = normalised[0]
    for u in normalised[1:]:
        kronecker = torch.kron(kronecker, u)
    assert math.isclose(
        float(torch.trace(kronecker)), float(torch.trace(factors[0])), rel_tol=1e-12
    )
    for u, factor in zip(normalised, factors, strict=True):  # only a rescaling
        ratio = u / factor
        torch.testing.assert_close(ratio, torch.full_like(ratio, float(ratio[0, 0])))


def test_zero_statistics_stay_zero() -> None:
    zeros = [torch.zeros(3, 3), torch.zeros(2, 2)]
    assert all(torch.equal(u, z) for u, z in zip(trace_normalised(zeros), zeros, strict=True))


def test_direction_equals_the_explicit_kronecker_solve_on_a_3_way_tensor() -> None:
    model = tiny_convnet()
    before = copy.deepcopy(model)
    lr, eps = 0.1, 0.05
    optimizer = tnt(model, lr=lr, eps=eps, momentum=0.5)
    batches = tiny_batches(3)
    for index, batch in enumerate(batches):  # a momentum buffer that is not the gradient
        before = copy.deepcopy(model)
        take_steps(optimizer, model, [batch], seed=index)
    weight = model[2].weight  # (2, 3, 2, 2): the 2 x 3 x 4 tensor
    h1, h2, h3 = optimizer.state[weight][FACTORS]
    size = 2 * 3 * 4
    c = (float(torch.trace(h1)) / size) ** (1 / 3)
    u1, u2, u3 = h1 / (c**2 * 12), h2 / (c**2 * 8), h3 / (c**2 * 6)
    damped = torch.kron(
        torch.kron(u1 + eps * torch.eye(2, dtype=F64), u2 + eps * torch.eye(3, dtype=F64)),
        u3 + eps * torch.eye(4, dtype=F64),
    )
    momentum = optimizer.state[weight]["momentum_buffer"]
    expected = torch.linalg.solve(damped, momentum.reshape(-1))
    with torch.no_grad():
        direction = (before[2].weight - weight) / lr
    # the factors were inverted at the last step (t = 2 < T2: every T1 = 1 step)
    torch.testing.assert_close(direction.reshape(-1), expected)
    assert len(optimizer.state[weight][PRECONDITIONERS]) == 3


def test_state_size_is_two_factors_per_mode_plus_momentum() -> None:
    model = tiny_mlp()
    optimizer = tnt(model)
    take_steps(optimizer, model, tiny_batches(1))
    modes = [6, 25, 6, 4, 6, 4]  # W1 (6, 25), b1 (6,), W2 (4, 6), b2 (4,)
    floats = 2 * sum(n * n for n in modes) + sum(p.numel() for p in model.parameters())
    assert optimizer_state_bytes(optimizer) == 8 * floats
