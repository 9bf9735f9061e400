"""Shampoo against dense computations written here: statistics from numpy unfoldings, roots
from scipy's fractional matrix power, the direction from the explicit Kronecker product;
max_dim, grafting and the original Shampoo's sum."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import Tensor, nn

from optimizers.shampoo import FACTORS, PRECONDITIONERS, Shampoo
from runners.memory import optimizer_state_bytes
from tests.optimizers.problems import take_steps, tiny_batches, tiny_convnet, tiny_mlp


def numpy_unfolding(tensor: np.ndarray, mode: int) -> np.ndarray:
    return np.moveaxis(tensor, mode, 0).reshape(tensor.shape[mode], -1)


def order_k_view(p: Tensor) -> np.ndarray:
    array = p.detach().numpy()
    return array.reshape(*array.shape[:2], -1) if array.ndim == 4 else array


def shampoo(model: nn.Module, **settings: object) -> Shampoo:
    return Shampoo(model.parameters(), **{"warm_start": False, **settings})


def test_statistics_and_roots_match_numpy_unfoldings_and_scipy() -> None:
    model = tiny_convnet()
    eps = 0.01
    optimizer = shampoo(model, eps=eps)
    take_steps(optimizer, model, tiny_batches(1))
    orders_seen = set()
    for p in model.parameters():
        gradient = order_k_view(p.grad)
        order = gradient.ndim
        orders_seen.add(order)
        state = optimizer.state[p]
        for mode in range(order):
            unfolded = numpy_unfolding(gradient, mode)
            statistic = unfolded @ unfolded.T
            np.testing.assert_allclose(state[FACTORS][mode].numpy(), statistic, rtol=1e-10)
            root = scipy.linalg.fractional_matrix_power(
                statistic + eps * np.eye(len(statistic)), -1.0 / (2 * order)
            )
            np.testing.assert_allclose(
                state[PRECONDITIONERS][mode].numpy(), root, rtol=1e-7, atol=1e-10
            )
    assert orders_seen == {1, 2, 3}  # biases, the linear weight, conv weights


def test_direction_is_the_kronecker_product_applied_to_the_momentum() -> None:
    model = tiny_convnet()
    before = copy.deepcopy(model)
    lr = 0.1
    optimizer = shampoo(model, lr=lr, momentum=0.0)
    take_steps(optimizer, model, tiny_batches(1))
    conv, conv_before = model[2], before[2]  # weight (2, 3, 2, 2): a 2 x 3 x 4 tensor
    p1, p2, p3 = optimizer.state[conv.weight][PRECONDITIONERS]
    expected = torch.kron(torch.kron(p1, p2), p3) @ conv.weight.grad.reshape(-1)
    with torch.no_grad():
        direction = (conv_before.weight - conv.weight) / lr
    torch.testing.assert_close(direction.reshape(-1), expected)


@pytest.mark.parametrize("decay", [0.9, 1.0])
def test_statistics_are_a_running_average_or_the_original_sum(decay: float) -> None:
    model = tiny_mlp()
    optimizer = shampoo(model, statistics_decay=decay)
    weight = model[3].weight
    expected = None
    for index, batch in enumerate(tiny_batches(3)):
        take_steps(optimizer, model, [batch], seed=index)
        gradient = weight.grad
        estimate = gradient @ gradient.T
        if expected is None:
            expected = estimate
        elif decay == 1.0:
            expected = expected + estimate
        else:
            expected = decay * expected + (1 - decay) * estimate
        torch.testing.assert_close(optimizer.state[weight][FACTORS][0], expected)


def test_modes_longer_than_max_dim_are_not_preconditioned() -> None:
    model = tiny_mlp()  # first Linear: weight (6, 25), bias (6,)
    before = copy.deepcopy(model)
    lr, eps = 0.1, 0.01
    optimizer = shampoo(model, lr=lr, eps=eps, momentum=0.0, max_dim=6)
    take_steps(optimizer, model, tiny_batches(1))
    weight = model[1].weight
    factors = optimizer.state[weight][FACTORS]
    preconditioners = optimizer.state[weight][PRECONDITIONERS]
    assert factors[1] is None and preconditioners[1] is None
    gradient = weight.grad.numpy()
    root = scipy.linalg.fractional_matrix_power(gradient @ gradient.T + eps * np.eye(6), -1 / 4)
    with torch.no_grad():
        direction = (before[1].weight - weight) / lr
    np.testing.assert_allclose(direction.numpy(), root @ gradient, rtol=1e-7)


@pytest.mark.parametrize("grafting", ["sgd", "adagrad"])
def test_grafting_takes_the_direction_of_shampoo_and_the_norm_of_the_other_step(
    grafting: str,
) -> None:
    lr = 0.1
    batches = tiny_batches(2)
    plain_model, grafted_model = tiny_mlp(), tiny_mlp()
    plain = shampoo(plain_model, lr=lr)
    grafted = shampoo(grafted_model, lr=lr, grafting=grafting, grafting_eps=1e-8)
    sums = [torch.zeros_like(p) for p in plain_model.parameters()]
    for index, batch in enumerate(batches):
        before = copy.deepcopy(plain_model)
        take_steps(plain, plain_model, [batch], seed=index)
        take_steps(grafted, grafted_model, [batch], seed=index)
        for p, q, p_before, total in zip(
            plain_model.parameters(),
            grafted_model.parameters(),
            before.parameters(),
            sums,
            strict=True,
        ):
            with torch.no_grad():
                direction = (p_before - p) / lr
                grafted_direction = (p_before - q) / lr
                momentum = plain.state[p]["momentum_buffer"]
                total += p.grad**2
                graft = momentum if grafting == "sgd" else momentum / (total.sqrt() + 1e-8)
                expected = direction * graft.norm() / direction.norm()
            torch.testing.assert_close(grafted_direction, expected)
        grafted_model.load_state_dict(plain_model.state_dict())  # same point for the next step


def test_conv_reshape_matrix_uses_two_modes() -> None:
    model = tiny_convnet()
    optimizer = shampoo(model, conv_reshape="matrix")
    take_steps(optimizer, model, tiny_batches(1))
    shapes = [tuple(f.shape) for f in optimizer.state[model[2].weight][FACTORS]]
    assert shapes == [(2, 2), (12, 12)]


def test_state_size_is_two_factors_per_mode_plus_momentum() -> None:
    model = tiny_mlp()
    optimizer = shampoo(model)
    take_steps(optimizer, model, tiny_batches(1))
    modes = [6, 25, 6, 4, 6, 4]  # W1 (6, 25), b1 (6,), W2 (4, 6), b2 (4,)
    floats = 2 * sum(n * n for n in modes) + sum(p.numel() for p in model.parameters())
    assert optimizer_state_bytes(optimizer) == 8 * floats


def test_coupled_newton_roots_and_the_schedule_without_early_roots() -> None:
    """root_method=coupled_newton gives eigh's roots to the iteration's tolerance, and
    early_inverses=false takes roots at t = 0 and t = T2 only (the TNT code's
    "-lessInverse" Shampoo on the autoencoders)."""
    batches = tiny_batches(5)
    by_method = {}
    for method in ("eigh", "coupled_newton"):
        model = tiny_mlp()
        optimizer = shampoo(model, root_method=method, inverse_every=3, early_inverses=False)
        roots_at = []
        for step, batch in enumerate(batches):
            before = [
                [None if r is None else r.clone() for r in optimizer.state[p][PRECONDITIONERS]]
                for p in model.parameters()
                if PRECONDITIONERS in optimizer.state.get(p, {})
            ]
            take_steps(optimizer, model, [batch], seed=step)
            after = [optimizer.state[p][PRECONDITIONERS] for p in model.parameters()]
            changed = not before or any(
                not torch.equal(a, b)
                for old, new in zip(before, after, strict=True)
                for a, b in zip(old, new, strict=True)
            )
            roots_at.append(step) if changed else None
        assert roots_at == [0, 3], method
        by_method[method] = [p.detach().clone() for p in model.parameters()]
    for a, b in zip(by_method["eigh"], by_method["coupled_newton"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
