"""KFAC against dense computations written here: the exact Fisher block of one example, the
factors as averages of per-example quantities (torch.func) and of conv patches (loops), the
damping split, KL clipping, the running average, warm start and the inverse fallback."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from models.likelihoods import CrossEntropy
from optimizers.curvature import as_matrix
from optimizers.kfac import (
    ACTIVATION_FACTOR,
    ACTIVATION_INVERSE,
    GRADIENT_FACTOR,
    GRADIENT_INVERSE,
    KFAC,
)
from runners.closure import StepClosure
from runners.memory import optimizer_state_bytes
from tests.optimizers.problems import closure_for, take_steps, tiny_batches, tiny_convnet, tiny_mlp
from tests.optimizers.reference import patches_by_loop, per_example_output_gradients

F64 = torch.float64


def eye(n: int) -> Tensor:
    return torch.eye(n, dtype=F64)


def kfac(model: nn.Module, **settings: object) -> KFAC:
    return KFAC(model.parameters(), model=model, **{"warm_start": False, **settings})


def step_direction(model_before: nn.Module, model_after: nn.Module, lr: float) -> list[Tensor]:
    """D of the step just taken: (W_before - W_after) / lr for every parameter."""
    with torch.no_grad():
        return [
            (before - after) / lr
            for before, after in zip(
                model_before.parameters(), model_after.parameters(), strict=True
            )
        ]


@pytest.mark.parametrize("fisher", ["sampled", "empirical"])
def test_single_linear_layer_with_one_example_solves_the_exact_fisher_block(fisher: str) -> None:
    torch.manual_seed(0)
    layer = nn.Linear(3, 4).double()
    x, y = torch.randn(1, 3, dtype=F64), torch.tensor([2])
    before = copy.deepcopy(layer)
    lr, damping = 0.1, 0.05
    optimizer = kfac(layer, lr=lr, damping=damping, momentum=0.0, fisher=fisher)
    torch.manual_seed(5)
    optimizer.step(StepClosure(layer, CrossEntropy(), x, y))

    torch.manual_seed(5)  # the labels the step drew (same seed, same draw) or the true ones
    labels = CrossEntropy().sample(before(x)) if fisher == "sampled" else y
    params = {name: p.detach() for name, p in before.named_parameters()}

    def loss(params: dict[str, Tensor], targets: Tensor) -> Tensor:
        return F.cross_entropy(functional_call(before, params, (x,)), targets)

    fisher_gradient = grad(loss)(params, labels)
    v = as_matrix(fisher_gradient["weight"], fisher_gradient["bias"]).reshape(-1)
    exact_block = torch.outer(v, v)  # this example's Fisher block in row-major vec([dW | db])

    state = optimizer.state[layer.weight]
    A, G = state[ACTIVATION_FACTOR], state[GRADIENT_FACTOR]
    torch.testing.assert_close(torch.kron(G, A), exact_block)

    a_tilde = torch.cat([x[0], torch.ones(1, dtype=F64)])
    g = fisher_gradient["bias"]  # dloss/ds for a single example
    torch.testing.assert_close(
        torch.kron(torch.outer(g, g), torch.outer(a_tilde, a_tilde)), exact_block
    )
    root = math.sqrt(damping)
    damped = torch.kron(
        torch.outer(g, g) + root * eye(4), torch.outer(a_tilde, a_tilde) + root * eye(4)
    )
    true_gradient = grad(loss)(params, y)
    M = as_matrix(true_gradient["weight"], true_gradient["bias"])  # momentum 0: m = g
    expected = torch.linalg.solve(damped, M.reshape(-1)).reshape(4, 4)
    weight_step, bias_step = step_direction(before, layer, lr)
    torch.testing.assert_close(as_matrix(weight_step, bias_step), expected)


def test_factors_average_per_example_activations_and_output_gradients() -> None:
    model = tiny_mlp()
    before = copy.deepcopy(model)
    optimizer = kfac(model)
    x, y = tiny_batches(1, batch_size=6)[0]
    torch.manual_seed(3)
    optimizer.step(closure_for(model, (x, y)))
    torch.manual_seed(3)
    labels = CrossEntropy().sample(before(x))

    params = {name: p.detach() for name, p in before.named_parameters()}

    def example_loss(params: dict[str, Tensor], x_n: Tensor, y_n: Tensor) -> Tensor:
        return F.cross_entropy(functional_call(before, params, (x_n[None],)), y_n[None])

    per_example = vmap(grad(example_loss), in_dims=(None, 0, 0))(params, x, labels)
    hidden = torch.relu(before[1](before[0](x))).detach()
    ones = torch.ones(6, 1, dtype=F64)
    for layer, inputs, prefix in ((before[1], x.flatten(1), "1"), (before[3], hidden, "3")):
        a_tilde = torch.cat([inputs, ones], dim=1)
        g = per_example[f"{prefix}.bias"]  # d loss_n / d s_n
        # the per-example weight gradient is g_n a_n^T: the factors see exactly these pieces
        torch.testing.assert_close(
            per_example[f"{prefix}.weight"], g[:, :, None] * inputs[:, None, :]
        )
        state = optimizer.state[dict(model.named_parameters())[f"{prefix}.weight"]]
        torch.testing.assert_close(state[ACTIVATION_FACTOR], a_tilde.T @ a_tilde / 6)
        torch.testing.assert_close(state[GRADIENT_FACTOR], g.T @ g / 6)
        del layer


def test_conv_factors_equal_a_loop_over_patches() -> None:
    model = tiny_convnet()
    before = copy.deepcopy(model)
    optimizer = kfac(model)
    x, y = tiny_batches(1, batch_size=3)[0]
    torch.manual_seed(4)
    optimizer.step(closure_for(model, (x, y)))
    torch.manual_seed(4)
    labels = CrossEntropy().sample(before(x))

    conv1, _, conv2, _, _, linear = before
    with torch.no_grad():
        s1 = conv1(x)
        s2 = conv2(torch.relu(s1))
    heads = {
        "0": (x, conv1, s1, nn.Sequential(nn.ReLU(), conv2, nn.ReLU(), nn.Flatten(), linear)),
        "2": (torch.relu(s1), conv2, s2, nn.Sequential(nn.ReLU(), nn.Flatten(), linear)),
    }
    for name, (inputs, conv, s, head) in heads.items():
        patches = patches_by_loop(inputs, conv)  # (N, T, d)
        batch, positions = patches.shape[:2]
        A = (
            sum(
                patches[n, t, :, None] * patches[n, t, None, :]
                for n in range(batch)
                for t in range(positions)
            )
            / batch
        )
        g = per_example_output_gradients(head, s, labels)  # (N, C_out, H, W)
        G = sum(
            torch.outer(g[n, :, i, j], g[n, :, i, j])
            for n in range(batch)
            for i in range(s.shape[2])
            for j in range(s.shape[3])
        ) / (batch * positions)
        state = optimizer.state[dict(model.named_modules())[name].weight]
        torch.testing.assert_close(state[ACTIVATION_FACTOR], A)
        torch.testing.assert_close(state[GRADIENT_FACTOR], G)


def test_factors_are_running_averages_and_inverses_follow_the_schedule() -> None:
    model = tiny_mlp()
    optimizer = kfac(model, curvature_every=2, inverse_every=4, statistics_decay=0.75)
    weight = model[1].weight
    batches = tiny_batches(9)
    history = []
    for index, batch in enumerate(batches):
        torch.manual_seed(index)
        optimizer.step(closure_for(model, batch))
        state = optimizer.state[weight]
        history.append({key: state[key].clone() for key in state if key != "momentum_buffer"})
    inputs = [torch.cat([x.flatten(1), torch.ones(16, 1, dtype=F64)], 1) for x, _ in batches]
    estimates = [a.T @ a / 16 for a in inputs]
    expected = estimates[0]
    for step in range(9):
        if step % 2 == 0 and step > 0:
            expected = 0.75 * expected + 0.25 * estimates[step]
        torch.testing.assert_close(history[step][ACTIVATION_FACTOR], expected)
    inverted_at = [
        step
        for step in range(1, 9)
        if not torch.equal(history[step][ACTIVATION_INVERSE], history[step - 1][ACTIVATION_INVERSE])
    ]
    assert inverted_at == [2, 4, 8]  # every T1 = 2 while t < T2 = 4, then every T2
    root = math.sqrt(optimizer.param_groups[0]["damping"])
    torch.testing.assert_close(
        history[8][ACTIVATION_INVERSE],
        torch.linalg.inv(history[8][ACTIVATION_FACTOR] + root * eye(26)),
    )


def test_trace_damping_split() -> None:
    model = tiny_mlp()
    optimizer = kfac(model, damping=0.2, damping_split="trace")
    take_steps(optimizer, model, tiny_batches(1))
    state = optimizer.state[model[3].weight]
    A, G = state[ACTIVATION_FACTOR], state[GRADIENT_FACTOR]
    pi = math.sqrt((torch.trace(A) / 7) / (torch.trace(G) / 4))
    root = math.sqrt(0.2)
    torch.testing.assert_close(state[ACTIVATION_INVERSE], torch.linalg.inv(A + pi * root * eye(7)))
    torch.testing.assert_close(state[GRADIENT_INVERSE], torch.linalg.inv(G + root / pi * eye(4)))


def test_kl_clip_scales_the_preconditioned_step() -> None:
    lr, kl_clip = 0.5, 1e-5
    batches = tiny_batches(1)
    model, clipped_model = tiny_mlp(), tiny_mlp()
    unclipped = kfac(model, lr=lr)
    clipped = kfac(clipped_model, lr=lr, kl_clip=kl_clip)
    before = copy.deepcopy(model)
    take_steps(unclipped, model, batches)
    take_steps(clipped, clipped_model, batches)
    directions = step_direction(before, model, lr)
    gradients = [p.grad for p in model.parameters()]
    inner = sum(float((d * g).sum()) for d, g in zip(directions, gradients, strict=True))
    nu = min(1.0, math.sqrt(kl_clip / (lr**2 * inner)))
    assert nu < 0.5  # the bound is active
    for d, d_clipped in zip(directions, step_direction(before, clipped_model, lr), strict=True):
        torch.testing.assert_close(d_clipped, nu * d)


def test_warm_start_averages_the_factors_and_leaves_the_weights() -> None:
    model = tiny_mlp()
    before = copy.deepcopy(model)
    optimizer = KFAC(model.parameters(), model=model, warm_start=True)
    batches = tiny_batches(3)
    optimizer.warm_start(closure_for(model, batch) for batch in batches)
    for p, q in zip(model.parameters(), before.parameters(), strict=True):
        assert torch.equal(p, q) and p.grad is None
    assert optimizer.steps_taken == 0
    inputs = [torch.cat([x.flatten(1), torch.ones(16, 1, dtype=F64)], 1) for x, _ in batches]
    expected = sum(a.T @ a / 16 for a in inputs) / 3
    torch.testing.assert_close(optimizer.state[model[1].weight][ACTIVATION_FACTOR], expected)
    # step 0 continues the average from the warm-start value
    x = batches[0][0]
    torch.manual_seed(0)
    optimizer.step(closure_for(model, batches[0]))
    a = torch.cat([x.flatten(1), torch.ones(16, 1, dtype=F64)], 1)
    torch.testing.assert_close(
        optimizer.state[model[1].weight][ACTIVATION_FACTOR], 0.9 * expected + 0.1 * a.T @ a / 16
    )


def test_warm_start_off_does_nothing() -> None:
    model = tiny_mlp()
    optimizer = kfac(model)
    optimizer.warm_start(closure_for(model, batch) for batch in tiny_batches(2))
    assert ACTIVATION_FACTOR not in optimizer.state[model[1].weight]


def test_a_failed_inverse_keeps_the_previous_one_and_is_counted() -> None:
    model = tiny_mlp()
    # statistics every 2 steps, inverses every step: step 1 inverts step 0's factors again
    optimizer = kfac(model, curvature_every=2, inverse_every=1)
    batches = tiny_batches(2)
    take_steps(optimizer, model, batches[:1])
    state = optimizer.state[model[1].weight]
    previous = state[ACTIVATION_INVERSE].clone()
    state[ACTIVATION_FACTOR][0, 0] = float("nan")
    take_steps(optimizer, model, batches[1:])
    assert optimizer.inverse_failures == 1
    assert torch.equal(state[ACTIVATION_INVERSE], previous)
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())


def test_state_size_counts_factors_inverses_and_momentum() -> None:
    model = tiny_mlp()
    optimizer = kfac(model)
    take_steps(optimizer, model, tiny_batches(1))
    floats = 2 * (26**2 + 6**2) + 2 * (7**2 + 4**2) + sum(p.numel() for p in model.parameters())
    assert optimizer_state_bytes(optimizer) == 8 * floats
