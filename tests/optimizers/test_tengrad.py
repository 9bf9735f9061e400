"""TENGraD against dense computations written here: the explicit damped Fisher block
(F + gamma I)^-1 v of per-example gradients from torch.func, for Linear and Conv2d layers
(exact and spatially averaged), the Woodbury pieces against an explicit U, the reuse of the
factor between refreshes, the Cholesky fallback, coverage and the state it keeps."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from models.likelihoods import CrossEntropy
from optimizers.curvature import UnsupportedLayerWarning
from optimizers.tengrad import (
    ACTIVATIONS,
    GRAM_CHOLESKY,
    OUTPUT_GRADIENTS,
    PER_EXAMPLE_GRADIENTS,
    FactoredGradients,
    FlatGradients,
    TENGraD,
    exact_gradients,
    gram_cholesky,
    woodbury_solve,
)
from runners.closure import StepClosure
from runners.memory import optimizer_state_bytes
from tests.optimizers.problems import take_steps, tiny_batches, tiny_convnet, tiny_mlp
from tests.optimizers.reference import patches_by_loop, per_example_output_gradients

F64 = torch.float64
LR = 0.1


def tengrad(model: nn.Module, **settings: object) -> TENGraD:
    return TENGraD(model.parameters(), model=model, **{"lr": LR, "momentum": 0.0, **settings})


def gradient_matrix(weight: Tensor, bias: Tensor | None) -> Tensor:
    """[dW | db], (d_out, d_in [+1]), conv weights flattened (C_in, kh, kw)."""
    matrix = weight.reshape(weight.shape[0], -1)
    return matrix if bias is None else torch.cat([matrix, bias[:, None]], dim=1)


def explicit_solve(per_example: Tensor, v: Tensor, damping: float) -> Tensor:
    """(F + gamma I)^-1 vec(v) with F = (1/N) sum_n vec(G_n) vec(G_n)^T built as a matrix;
    per_example: the G_n, (N, d_out, d_in [+1])."""
    u = per_example.flatten(1).T  # (P, N), columns vec(G_n)
    fisher = u @ u.T / per_example.shape[0]
    damped = fisher + damping * torch.eye(u.shape[0], dtype=u.dtype)
    return torch.linalg.solve(damped, v.reshape(-1)).reshape(v.shape)


def example_losses(model: nn.Module, x: Tensor) -> Callable[..., Tensor]:
    def loss(params: dict[str, Tensor], x_n: Tensor, y_n: Tensor) -> Tensor:
        return F.cross_entropy(functional_call(model, params, (x_n[None],)), y_n[None])

    return loss


def layer_gradients(
    model: nn.Module, x: Tensor, labels: Tensor, per_example: bool
) -> dict[str, Tensor]:
    """Every layer's [dW | db] (layers with a bias) at `model`'s weights: per example,
    (N, d_out, d_in+1), with torch.func's vmap(grad(...)), or of the mean loss."""
    params = {name: p.detach() for name, p in model.named_parameters()}
    loss = example_losses(model, x)
    if per_example:
        gradients = vmap(grad(loss), in_dims=(None, 0, 0))(params, x, labels)
        to_matrix = vmap(gradient_matrix)
    else:

        def mean_loss(params: dict[str, Tensor]) -> Tensor:
            return F.cross_entropy(functional_call(model, params, (x,)), labels)

        gradients, to_matrix = grad(mean_loss)(params), gradient_matrix
    layers = {name.rpartition(".")[0] for name in gradients}  # "" for a bare layer
    prefix = {layer: f"{layer}." if layer else "" for layer in layers}
    return {
        layer: to_matrix(gradients[f"{prefix[layer]}weight"], gradients[f"{prefix[layer]}bias"])
        for layer in layers
    }


def directions_of_one_step(
    model: nn.Module, x: Tensor, y: Tensor, seed: int = 5, **settings: object
) -> tuple[dict[str, Tensor], nn.Module, Tensor]:
    """One real step of TENGraD: every layer's D = (W_before - W_after) / lr as [dW | db],
    the model before the step and the labels the statistics used (sampled ones drawn again
    with the same seed, or the true ones)."""
    before = copy.deepcopy(model)
    optimizer = tengrad(model, **settings)
    torch.manual_seed(seed)
    optimizer.step(StepClosure(model, CrossEntropy(), x, y))
    torch.manual_seed(seed)  # the labels the step drew: same seed, same draw
    sampled = settings.get("fisher", "sampled") == "sampled"
    labels = CrossEntropy().sample(before(x)) if sampled else y
    directions = {}
    with torch.no_grad():
        for (name, module), after in zip(before.named_modules(), model.modules(), strict=True):
            if isinstance(module, nn.Linear | nn.Conv2d):
                step = [
                    (p - q) / LR
                    for p, q in zip(module.parameters(), after.parameters(), strict=True)
                ]
                directions[name] = gradient_matrix(step[0], step[1] if len(step) > 1 else None)
    return directions, before, labels


def conv_model(kernel: int = 3, padding: int = 1) -> nn.Module:
    """A conv whose output feeds a Linear head: 2 x 4 x 4 inputs, 3 classes."""
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, kernel, padding=padding)
    side = 4 + 2 * padding - kernel + 1
    return nn.Sequential(conv, nn.Flatten(), nn.Linear(3 * side * side, 3)).double()


def conv_batch(batch: int = 5) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 2, 4, 4, generator=generator, dtype=F64)
    return x, torch.randint(0, 3, (batch,), generator=generator)


# ------------------------------------------------------------------ against torch.func
@pytest.mark.parametrize("fisher", ["sampled", "empirical"])
def test_linear_direction_is_the_explicit_damped_fisher_solve(fisher: str) -> None:
    torch.manual_seed(0)
    layer = nn.Linear(3, 4).double()
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(5, 3, generator=generator, dtype=F64)
    y = torch.randint(0, 4, (5,), generator=generator)
    damping = 0.05
    directions, before, labels = directions_of_one_step(layer, x, y, damping=damping, fisher=fisher)
    (per_example,) = layer_gradients(before, x, labels, per_example=True).values()
    (v,) = layer_gradients(before, x, y, per_example=False).values()  # momentum 0: m = g
    expected = explicit_solve(per_example, v, damping)
    torch.testing.assert_close(directions[""], expected)
    # the preconditioning is real: far from the plain step v / gamma
    assert not torch.allclose(expected, v / damping, rtol=0.1)


@pytest.mark.parametrize("fisher", ["sampled", "empirical"])
def test_exact_conv_direction_is_the_explicit_damped_fisher_solve(fisher: str) -> None:
    model = conv_model()
    x, y = conv_batch()
    damping = 0.01
    directions, before, labels = directions_of_one_step(
        model, x, y, damping=damping, fisher=fisher, conv_gradients="exact"
    )
    per_example = layer_gradients(before, x, labels, per_example=True)
    mean = layer_gradients(before, x, y, per_example=False)
    for name in ("0", "2"):  # the conv (16 positions) and the Linear head
        expected = explicit_solve(per_example[name], mean[name], damping)
        torch.testing.assert_close(directions[name], expected)


def test_averaged_conv_direction_uses_spatially_averaged_factors() -> None:
    model = conv_model()
    x, y = conv_batch()
    damping = 0.01
    directions, before, labels = directions_of_one_step(model, x, y, damping=damping)
    conv, _, head = before
    with torch.no_grad():
        s = conv(x)
    a = patches_by_loop(x, conv).mean(dim=1)  # a_n = mean_t a_{n,t}, (N, 19)
    g = per_example_output_gradients(nn.Sequential(nn.Flatten(), head), s, labels).sum((2, 3))
    averaged = g[:, :, None] * a[:, None, :]  # g_n a_n^T with g_n = sum_t g_{n,t}
    mean = layer_gradients(before, x, y, per_example=False)
    torch.testing.assert_close(directions["0"], explicit_solve(averaged, mean["0"], damping))
    exact = layer_gradients(before, x, labels, per_example=True)["0"]
    assert not torch.allclose(averaged, exact, rtol=0.1)  # with 16 positions an approximation
    # the Linear head has one position: its direction is exact in either form
    expected = explicit_solve(layer_gradients(before, x, labels, True)["2"], mean["2"], damping)
    torch.testing.assert_close(directions["2"], expected)


def test_averaged_and_exact_conv_forms_coincide_for_a_1x1_output() -> None:
    x, y = conv_batch()
    damping = 0.01
    averaged, before, labels = directions_of_one_step(
        conv_model(kernel=4, padding=0), x, y, damping=damping
    )
    exact, _, _ = directions_of_one_step(
        conv_model(kernel=4, padding=0), x, y, damping=damping, conv_gradients="exact"
    )
    per_example = layer_gradients(before, x, labels, per_example=True)
    mean = layer_gradients(before, x, y, per_example=False)
    for name in ("0", "2"):
        expected = explicit_solve(per_example[name], mean[name], damping)
        torch.testing.assert_close(averaged[name], expected)
        torch.testing.assert_close(exact[name], expected)


# ------------------------------------------------------------------ the pure functions
def explicit_u(activations: Tensor, output_gradients: Tensor) -> Tensor:
    """U = [vec(g_n a_n^T)]_n, (d_out*d_in, N), one column at a time."""
    columns = [
        torch.outer(g, a).reshape(-1) for a, g in zip(activations, output_gradients, strict=True)
    ]
    return torch.stack(columns, dim=1)


@pytest.mark.parametrize(("batch", "d_in", "d_out"), [(5, 3, 4), (9, 2, 3)])
def test_factored_gram_projection_and_expansion_equal_an_explicit_u(
    batch: int, d_in: int, d_out: int
) -> None:
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(batch, d_in, generator=generator, dtype=F64)
    g = torch.randn(batch, d_out, generator=generator, dtype=F64)
    v = torch.randn(d_out, d_in, generator=generator, dtype=F64)
    z = torch.randn(batch, generator=generator, dtype=F64)
    u = explicit_u(a, g)
    gradients = FactoredGradients(a, g)
    torch.testing.assert_close(gradients.gram(), u.T @ u)
    torch.testing.assert_close(gradients.project(v), u.T @ v.reshape(-1))
    torch.testing.assert_close(gradients.expand(z), (u @ z).reshape(d_out, d_in))
    damping = 0.3
    solved = woodbury_solve(v, gradients, gram_cholesky(gradients, damping), damping)
    dense = u @ u.T / batch + damping * torch.eye(d_out * d_in, dtype=F64)
    torch.testing.assert_close(solved.reshape(-1), torch.linalg.solve(dense, v.reshape(-1)))


@pytest.mark.parametrize(("batch", "size"), [(5, 12), (12, 6)])  # N < P and N > P
def test_woodbury_solve_equals_the_dense_solve_on_a_random_u(batch: int, size: int) -> None:
    generator = torch.Generator().manual_seed(1)
    u = torch.randn(size, batch, generator=generator, dtype=F64)
    v = torch.randn(size // 3, 3, generator=generator, dtype=F64)
    gradients = FlatGradients(u.T.reshape(batch, size // 3, 3))
    torch.testing.assert_close(gradients.gram(), u.T @ u)
    damping = 0.07
    factor = gram_cholesky(gradients, damping)
    expected_factor = torch.linalg.cholesky(batch * damping * torch.eye(batch, dtype=F64) + u.T @ u)
    torch.testing.assert_close(factor, expected_factor)
    dense = u @ u.T / batch + damping * torch.eye(size, dtype=F64)
    expected = torch.linalg.solve(dense, v.reshape(-1)).reshape(v.shape)
    torch.testing.assert_close(woodbury_solve(v, gradients, factor, damping), expected)


def test_exact_gradients_sum_the_outer_products_over_positions() -> None:
    generator = torch.Generator().manual_seed(2)
    a = torch.randn(3, 7, 5, generator=generator, dtype=F64)  # (N, T, d_in)
    g = torch.randn(3, 7, 2, generator=generator, dtype=F64)  # (N, T, d_out)
    expected = torch.stack([sum(torch.outer(g[n, t], a[n, t]) for t in range(7)) for n in range(3)])
    torch.testing.assert_close(exact_gradients(a, g).gradients, expected)


# ------------------------------------------------------------------ reuse and schedule
def test_the_factor_is_reused_until_the_next_refresh() -> None:
    model = tiny_mlp()
    damping = 0.2
    optimizer = tengrad(model, damping=damping, inverse_every=3, fisher="empirical")
    batches = tiny_batches(4)
    weight = model[1].weight
    take_steps(optimizer, model, batches[:1])
    factor = optimizer.state[weight][GRAM_CHOLESKY]
    kept = factor.clone()
    x0, y0 = batches[0]
    torch.testing.assert_close(
        optimizer.state[weight][ACTIVATIONS],
        torch.cat([x0.flatten(1), torch.ones(16, 1, dtype=F64)], dim=1),
    )
    take_steps(optimizer, model, batches[1:2], seed=1)
    start_of_step_2 = copy.deepcopy(model)
    take_steps(optimizer, model, batches[2:3], seed=2)
    assert optimizer.state[weight][GRAM_CHOLESKY] is factor  # not recomputed on t = 1, 2
    assert torch.equal(factor, kept)
    assert optimizer.state["schedule"]["statistics_updates"] == 1
    # t = 2 preconditions its own gradient with step 0's Fisher (its batch, its weights)
    model_0 = tiny_mlp()
    per_example = layer_gradients(model_0, x0, y0, per_example=True)
    x2, y2 = batches[2]
    v = layer_gradients(start_of_step_2, x2, y2, per_example=False)
    with torch.no_grad():
        for name in ("1", "3"):
            before, after = start_of_step_2.get_submodule(name), model.get_submodule(name)
            direction = gradient_matrix(
                (before.weight - after.weight) / LR, (before.bias - after.bias) / LR
            )
            torch.testing.assert_close(
                direction, explicit_solve(per_example[name], v[name], damping)
            )
    take_steps(optimizer, model, batches[3:4], seed=3)
    assert optimizer.state[weight][GRAM_CHOLESKY] is not factor  # refreshed on t = 3
    assert optimizer.state["schedule"]["statistics_updates"] == 2


# ------------------------------------------------------------------ numerical safety
def overflowing(batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """The batch scaled so that the Gram (entries ~ ||a||^2 ||g||^2) overflows in float64
    while the loss stays finite."""
    x, y = batch
    return x * 1e160, y


def test_a_failed_cholesky_keeps_the_previous_factor_and_is_counted() -> None:
    model = tiny_mlp()
    optimizer = tengrad(model, inverse_every=1, fisher="empirical")
    batches = tiny_batches(2)
    take_steps(optimizer, model, batches[:1])
    state = optimizer.state[model[1].weight]
    previous = {key: state[key] for key in (ACTIVATIONS, OUTPUT_GRADIENTS, GRAM_CHOLESKY)}
    (loss,) = take_steps(optimizer, model, [overflowing(batches[1])], seed=1)
    assert loss == loss and abs(loss) < float("inf")
    assert optimizer.inverse_failures == 2  # both layers
    for key, value in previous.items():
        assert state[key] is value, key
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())
    assert not [key for key in state if key.startswith("captured")]


def test_a_failed_first_cholesky_takes_the_damped_gradient_step() -> None:
    model = tiny_mlp()
    before = copy.deepcopy(model)
    damping = 0.5
    optimizer = tengrad(model, damping=damping, fisher="empirical")
    take_steps(optimizer, model, [overflowing(tiny_batches(1)[0])])
    assert optimizer.inverse_failures == 2
    assert GRAM_CHOLESKY not in optimizer.state[model[1].weight]
    for p, q in zip(before.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close((p - q).detach() / LR, q.grad / damping)  # D = m / gamma


# ------------------------------------------------------------------ coverage and state
def test_every_linear_and_conv_layer_of_the_convnet_has_a_factor() -> None:
    model = tiny_convnet()
    for conv_gradients in ("averaged", "exact"):
        optimizer = tengrad(model, conv_gradients=conv_gradients)
        take_steps(optimizer, model, tiny_batches(1))
        assert [layer.name for layer in optimizer.layers] == ["0", "2", "5"]
        for layer in optimizer.layers:
            state = optimizer.state[layer.weight]
            assert state[GRAM_CHOLESKY].shape == (16, 16)
            # the flat per-example gradients only for the exact form of convolutions
            flat = conv_gradients == "exact" and layer.name != "5"
            assert (PER_EXAMPLE_GRADIENTS in state) == flat
            assert (ACTIVATIONS in state) == (not flat)


def test_batch_norm_is_reported_once_and_takes_the_momentum_step() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3),
        nn.BatchNorm2d(2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(2 * 3 * 3, 4),
    ).double()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        optimizer = tengrad(model)
    reported = [w for w in caught if issubclass(w.category, UnsupportedLayerWarning)]
    assert len(reported) == 1
    assert "TENGraD" in str(reported[0].message) and "BatchNorm2d x1" in str(reported[0].message)
    assert [layer.name for layer in optimizer.layers] == ["0", "4"]
    norm = model[1]
    before = [p.detach().clone() for p in norm.parameters()]
    take_steps(optimizer, model, tiny_batches(1))
    for p, start in zip(norm.parameters(), before, strict=True):
        torch.testing.assert_close(p.detach(), start - LR * p.grad)  # momentum 0: D = g


def test_state_holds_the_factors_of_the_refresh_batch_and_momentum_only() -> None:
    model = tiny_mlp()
    optimizer = tengrad(model, momentum=0.9)
    take_steps(optimizer, model, tiny_batches(1))
    for layer in optimizer.layers:
        assert not [key for key in optimizer.state[layer.weight] if key.startswith("captured")]
    # A_tilde, Gamma and L (N = 16) of both layers, and a momentum buffer per parameter
    floats = 16 * (26 + 6 + 16) + 16 * (7 + 4 + 16) + sum(p.numel() for p in model.parameters())
    assert optimizer_state_bytes(optimizer) == 8 * floats


def test_sampled_fisher_needs_the_step_closure() -> None:
    model = tiny_mlp()
    optimizer = tengrad(model)
    x, y = tiny_batches(1)[0]

    def plain() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss

    with pytest.raises(TypeError, match="retain_graph"):
        optimizer.step(plain)
    optimizer = tengrad(model, fisher="empirical")
    optimizer.step(plain)
    assert GRAM_CHOLESKY in optimizer.state[model[1].weight]
