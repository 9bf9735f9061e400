"""K-BFGS and K-BFGS(L) against dense computations written here: H_a's first inverse and its
secant equation, the direction H_g M H_a, the (s_g, y_g) pair from per-example output
gradients (torch.func) at the old and the new weights, H_g's damped BFGS update, the second
pass on the same mini-batch through the closure, skipped updates, BatchNorm buffers, and
K-BFGS(L) against K-BFGS."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
from torch import Tensor, nn

from models.likelihoods import CrossEntropy
from optimizers.curvature import UnsupportedLayerWarning, as_matrix
from optimizers.kbfgs import (
    ACTIVATION_FACTOR,
    ACTIVATION_INVERSE,
    GRADIENT_INVERSE,
    KBFGS,
    PAIR_S,
    PAIRS_S,
)
from runners.closure import StepClosure
from tests.optimizers.kbfgs_authors import AuthorsKBFGS
from tests.optimizers.problems import closure_for, take_steps, tiny_batches, tiny_convnet, tiny_mlp
from tests.optimizers.reference import per_example_output_gradients

F64 = torch.float64
DAMPING = 0.3


def kbfgs(model: nn.Module, **settings: object) -> KBFGS:
    defaults = {"warm_start": False, "damping": DAMPING, "momentum": 0.0, "l2": 0.0}
    return KBFGS(model.parameters(), model=model, **{**defaults, **settings})


def ones_column(x: Tensor) -> Tensor:
    return torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], dim=1)


def layer_inputs_and_outputs(model: nn.Module, x: Tensor) -> list[tuple[Tensor, Tensor]]:
    """(a_tilde, s) of both Linear layers of tiny_mlp, written out by hand."""
    flatten, first, relu, second = model
    with torch.no_grad():
        a1 = flatten(x)
        s1 = first(a1)
        a2 = relu(s1)
        s2 = second(a2)
    return [(ones_column(a1), s1), (ones_column(a2), s2)]


def per_example_gradients(model: nn.Module, x: Tensor, y: Tensor) -> list[Tensor]:
    """dloss_n/ds_n of both layers (each example's own loss), with torch.func."""
    _, _, relu, second = model
    (_, s1), (_, s2) = layer_inputs_and_outputs(model, x)
    return [
        per_example_output_gradients(nn.Sequential(relu, second), s1, y),
        per_example_output_gradients(nn.Identity(), s2, y),
    ]


def dense_bfgs(inverse: Tensor, s: Tensor, y: Tensor) -> Tensor:
    rho = 1.0 / torch.dot(s, y)
    left = torch.eye(len(s), dtype=F64) - rho * torch.outer(s, y)
    return left @ inverse @ left.T + rho * torch.outer(s, s)


def damped_with_identity(s: Tensor, y: Tensor, mu1: float, mu2: float) -> tuple[Tensor, Tensor]:
    """The paper's double damping written out for H = I (H y = y)."""
    if torch.dot(s, y) < mu1 * torch.dot(y, y):
        theta = (1 - mu1) * torch.dot(y, y) / (torch.dot(y, y) - torch.dot(s, y))
        s = theta * s + (1 - theta) * y
    if torch.dot(s, y) < mu2 * torch.dot(s, s):
        theta = (1 - mu2) * torch.dot(s, s) / (torch.dot(s, s) - torch.dot(s, y))
        y = theta * y + (1 - theta) * s
    return s, y


def dense_gradients(model: nn.Module, x: Tensor, y: Tensor) -> list[Tensor]:
    """[dW | db] of the mean loss for both layers, at the model's weights."""
    model = copy.deepcopy(model)
    CrossEntropy().loss(model(x), y).backward()
    return [as_matrix(layer.weight.grad, layer.bias.grad) for layer in (model[1], model[3])]


def test_first_step_inverts_the_damped_activation_factor_and_preconditions_with_it() -> None:
    model = tiny_mlp()
    before = copy.deepcopy(model)
    lr = 0.1
    optimizer = kbfgs(model, lr=lr)
    x, y = tiny_batches(1, batch_size=7)[0]
    optimizer.step(closure_for(model, (x, y)))

    root = math.sqrt(DAMPING)
    for (a, _), layer, before_layer, gradient in zip(
        layer_inputs_and_outputs(before, x),
        (model[1], model[3]),
        (before[1], before[3]),
        dense_gradients(before, x, y),
        strict=True,
    ):
        factor = a.T @ a / a.shape[0]
        state = optimizer.state[layer.weight]
        torch.testing.assert_close(state[ACTIVATION_FACTOR], factor)
        exact_inverse = torch.linalg.inv(factor + root * torch.eye(len(factor), dtype=F64))
        torch.testing.assert_close(state[ACTIVATION_INVERSE], exact_inverse)
        # H_g = I before any pair: D = M (A + sqrt(lambda) I)^-1, M = the gradient
        step = as_matrix(before_layer.weight - layer.weight, before_layer.bias - layer.bias) / lr
        torch.testing.assert_close(step, gradient @ exact_inverse)


def test_pair_from_the_second_pass_and_the_damped_bfgs_update_of_h_g() -> None:
    model = tiny_mlp()
    before = copy.deepcopy(model)
    optimizer = kbfgs(model, lr=0.5)
    x, y = tiny_batches(1, batch_size=9)[0]
    optimizer.step(closure_for(model, (x, y)))

    old = layer_inputs_and_outputs(before, x)
    new = layer_inputs_and_outputs(model, x)
    old_gradients = per_example_gradients(before, x, y)
    new_gradients = per_example_gradients(model, x, y)
    for index, layer in enumerate((model[1], model[3])):
        s = new[index][1].mean(0) - old[index][1].mean(0)
        g = new_gradients[index].mean(0) - old_gradients[index].mean(0)
        damped_s, damped_y = damped_with_identity(s, g, mu1=0.2, mu2=math.sqrt(DAMPING))
        h_g = optimizer.state[layer.weight][GRADIENT_INVERSE]
        torch.testing.assert_close(
            h_g, dense_bfgs(torch.eye(len(s), dtype=F64), damped_s, damped_y)
        )
        torch.testing.assert_close(h_g @ damped_y, damped_s)  # the secant equation
        assert torch.linalg.eigvalsh(h_g).min() > 0


class RecordingClosure(StepClosure):
    """A step closure that remembers the inputs and the weights of every call."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.seen_inputs: list[Tensor] = []
        self.seen_weights: list[list[Tensor]] = []

    def forward_outputs(self) -> Tensor:  # the closure's own pass and the second pass run it
        self.seen_inputs.append(self.inputs.clone())
        self.seen_weights.append([p.detach().clone() for p in self.model.parameters()])
        return super().forward_outputs()


def test_the_second_pass_evaluates_the_same_batch_at_the_new_weights() -> None:
    model = tiny_mlp()
    optimizer = kbfgs(model, lr=0.1, inverse_every=2)
    batches = tiny_batches(4)
    calls = []
    for index, (x, y) in enumerate(batches):  # refreshes at t = 0, 1, 2; not at t = 3
        closure = RecordingClosure(model, CrossEntropy(), x, y)
        optimizer.step(closure)
        calls.append(closure.calls)
        if closure.calls == 2:
            first, second = closure.seen_inputs
            assert torch.equal(first, x) and torch.equal(second, x), index
            old, new = closure.seen_weights
            assert all(torch.equal(w, p) for w, p in zip(new, model.parameters(), strict=True))
            assert not all(torch.equal(w, v) for w, v in zip(old, new, strict=True))
    assert calls == [2, 2, 2, 1]


def test_a_step_that_does_not_move_skips_the_h_g_update_and_counts_it() -> None:
    model = tiny_mlp()
    optimizer = kbfgs(model, lr=0.0, inverse_every=3)
    take_steps(optimizer, model, tiny_batches(4))  # refreshes at t = 0, 1, 2, 3
    assert optimizer.skipped_updates == 2 * 4  # s_g = y_g = 0 for both layers, every time
    for layer in (model[1], model[3]):
        h_g = optimizer.state[layer.weight][GRADIENT_INVERSE]
        assert torch.equal(h_g, torch.eye(len(h_g), dtype=F64))


@pytest.mark.parametrize("history", [0, 3])
def test_k_bfgs_l_counts_the_skipped_pairs_of_a_step_that_does_not_move(history: int) -> None:
    model = tiny_mlp()
    optimizer = kbfgs(model, lr=0.0, inverse_every=3, inverse="lbfgs", history=history)
    take_steps(optimizer, model, tiny_batches(4))  # refreshes at t = 0, 1, 2, 3
    assert optimizer.skipped_updates == 2 * 4  # s_g = y_g = 0 for both layers, every time
    assert all(PAIRS_S not in optimizer.state[layer.weight] for layer in (model[1], model[3]))
    restored = kbfgs(tiny_mlp(), lr=0.0, inverse="lbfgs", history=history)
    restored.load_state_dict(optimizer.state_dict())  # the device counter round trips
    assert restored.skipped_updates == 2 * 4


def test_the_second_pass_leaves_batchnorm_statistics_alone() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(25, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 4)
    ).double()
    reference = copy.deepcopy(model)
    with pytest.warns(UnsupportedLayerWarning, match=r"K-BFGS preconditions Linear layers only"):
        optimizer = kbfgs(model, lr=0.1)
    x, y = tiny_batches(1)[0]
    closure = closure_for(model, (x, y))
    optimizer.step(closure)
    assert closure.calls == 2
    reference(x)  # one training-mode forward pass: the first one
    for buffer, expected in zip(model.buffers(), reference.buffers(), strict=True):
        assert torch.equal(buffer, expected)


def test_conv_layers_take_the_plain_momentum_step_and_are_reported_once() -> None:
    model = tiny_convnet()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        optimizer = kbfgs(model, lr=0.1)
    messages = [str(w.message) for w in caught if issubclass(w.category, UnsupportedLayerWarning)]
    assert len(messages) == 1
    assert "Conv2d x2 (no rule for this layer type in this method)" in messages[0]
    assert [layer.name for layer in optimizer.layers] == ["5"]
    before = copy.deepcopy(model)
    x, y = tiny_batches(1)[0]
    optimizer.step(closure_for(model, (x, y)))
    reference = copy.deepcopy(before)
    CrossEntropy().loss(reference(x), y).backward()
    conv = reference[0]
    torch.testing.assert_close((before[0].weight - model[0].weight) / 0.1, conv.weight.grad)


def test_lbfgs_with_enough_history_takes_the_bfgs_steps() -> None:
    batches = tiny_batches(6)
    results = {}
    for inverse, history in (("bfgs", 100), ("lbfgs", 100), ("lbfgs", 1)):
        model = tiny_mlp()
        optimizer = kbfgs(model, lr=0.3, momentum=0.9, inverse=inverse, history=history)
        take_steps(optimizer, model, batches)
        results[(inverse, history)] = [p.detach().clone() for p in model.parameters()]
    for p, q in zip(results[("bfgs", 100)], results[("lbfgs", 100)], strict=True):
        torch.testing.assert_close(p, q)
    assert not all(
        torch.allclose(p, q)
        for p, q in zip(results[("bfgs", 100)], results[("lbfgs", 1)], strict=True)
    )


def test_lbfgs_keeps_the_latest_history_pairs() -> None:
    model = tiny_mlp()
    optimizer = kbfgs(model, lr=0.3, inverse="lbfgs", history=2)
    take_steps(optimizer, model, tiny_batches(5))
    for layer in (model[1], model[3]):
        assert optimizer.state[layer.weight][PAIRS_S].shape == (2, layer.out_features)
    assert GRADIENT_INVERSE not in optimizer.state[model[1].weight]


@pytest.mark.parametrize("inverse", ["bfgs", "lbfgs"])
@pytest.mark.parametrize("ratio", [1e-4, 2.0])
def test_the_authors_iteration_step_by_step(inverse: str, ratio: float) -> None:
    """Several steps after a warm start, against the authors' iteration written out in
    tests/optimizers/kbfgs_authors.py: the same weights after every step (H_a and H_g
    updated after the second pass for the next step, A kept at step 0, the pair average from
    zero, the skip rule, momentum 0.9/0.1 from zero, l2 in the gradient). The authors' skip
    ratio 1e-4 never bites on this tiny problem; ratio 2 makes it skip some updates, with its
    g_k (the mean output gradient for H_g, a_bar for H_a)."""
    lr, damping = 0.3, 0.3
    batches = tiny_batches(9, batch_size=12)
    warm, steps = batches[:3], batches[3:]
    model = tiny_mlp()
    reference_model = copy.deepcopy(model)
    lbfgs = inverse == "lbfgs"
    authors = AuthorsKBFGS(reference_model, lr=lr, damping=damping, lbfgs=lbfgs, ratio=ratio)
    authors.warm_start(warm)
    optimizer = KBFGS(
        model.parameters(),
        model=model,
        lr=lr,
        damping=damping,
        inverse=inverse,
        min_curvature_ratio=ratio,
    )
    optimizer.warm_start(closure_for(model, batch) for batch in warm)
    for index, batch in enumerate(steps):
        optimizer.step(closure_for(model, batch))
        authors.step(*batch)
        for p, q in zip(model.parameters(), reference_model.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12, msg=f"step {index}")
    assert optimizer.skipped_updates == authors.skipped
    assert (authors.skipped > 0) == (ratio > 1)  # the large ratio exercises the skip rule


def test_the_pair_average_starts_at_zero_and_h_a_waits_for_the_next_step() -> None:
    """After one step: the stored pair average is 0.1 x the first pair (zero start), and the
    step's direction used H_a = A_lm^-1 while the stored H_a is already its BFGS update."""
    model = tiny_mlp()
    before = copy.deepcopy(model)
    lr = 0.2
    optimizer = kbfgs(model, lr=lr)
    x, y = tiny_batches(1, batch_size=8)[0]
    optimizer.step(closure_for(model, (x, y)))
    old, new = layer_inputs_and_outputs(before, x), layer_inputs_and_outputs(model, x)
    first = model[1]
    state = optimizer.state[first.weight]
    s = new[0][1].mean(0) - old[0][1].mean(0)
    torch.testing.assert_close(state[PAIR_S], 0.1 * s)
    a = old[0][0]
    factor = a.T @ a / a.shape[0]
    a_lm = factor + math.sqrt(DAMPING) * torch.eye(len(factor), dtype=F64)
    first_inverse = torch.linalg.inv(a_lm)
    step = as_matrix(before[1].weight - first.weight, before[1].bias - first.bias) / lr
    torch.testing.assert_close(step, dense_gradients(before, x, y)[0] @ first_inverse)
    s_a = first_inverse @ a.mean(0)
    torch.testing.assert_close(
        state[ACTIVATION_INVERSE], dense_bfgs(first_inverse, s_a, a_lm @ s_a)
    )


def test_the_interval_variant_refreshes_on_its_schedule_only() -> None:
    """inverse_every=3 (sobench's cheaper variant): the second pass at t = 0, 1, 2, 3, 6."""
    model = tiny_mlp()
    optimizer = kbfgs(model, lr=0.1, inverse_every=3)
    calls = []
    for x, y in tiny_batches(7):
        closure = RecordingClosure(model, CrossEntropy(), x, y)
        optimizer.step(closure)
        calls.append(closure.calls)
    assert calls == [2, 2, 2, 2, 1, 1, 2]


def test_the_second_pass_computes_no_weight_gradient_and_keeps_the_steps() -> None:
    """The pairs need the output gradients alone: the second pass backpropagates to the layer
    outputs, so each weight's gradient is computed once per step (the step's own pass)."""
    model = tiny_mlp()
    optimizer = kbfgs(model, lr=0.1)
    computed: dict[int, list[Tensor]] = {id(p): [] for p in model.parameters()}
    for p in model.parameters():
        p.register_hook(computed[id(p)].append)
    x, y = tiny_batches(1)[0]
    closure = closure_for(model, (x, y))
    optimizer.step(closure)
    assert closure.calls == 2
    for p in model.parameters():
        (gradient,) = computed[id(p)]  # once: the step's own backward pass
        assert torch.equal(p.grad, gradient)
