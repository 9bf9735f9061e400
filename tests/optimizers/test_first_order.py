"""The first-order methods of optimizers/first_order.py against the authors' update rules,
written out here as independent float64 loops (the equations of each class's docstring) on a
tiny least-squares problem whose gradients are computed by hand, not by autograd.

Each literal check is paired with the near miss it must tell apart (torch.optim's Adam,
RMSprop and SGD, coupled decay, the initial learning rate in the decay), so a swap to one of
them fails the test."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from optimizers.first_order import SGDW, AdamOnMomentum, RMSpropOnMomentum

STEPS = 6
TIGHT = {"rtol": 1e-10, "atol": 1e-13}  # float64, a few operations in another order


# --------------------------------------------------------------------------- the problem
def batches(count: int, seed: int = 0) -> list[tuple[Tensor, Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn(8, 3, generator=generator, dtype=torch.float64),
            torch.randn(8, 2, generator=generator, dtype=torch.float64),
        )
        for _ in range(count)
    ]


def start() -> list[Tensor]:
    """W (3 x 2) and b (2,): two parameter tensors, one a matrix, one a vector."""
    generator = torch.Generator().manual_seed(1)
    return [
        torch.randn(3, 2, generator=generator, dtype=torch.float64),
        torch.randn(2, generator=generator, dtype=torch.float64),
    ]


def loss_of(weights: list[Tensor], batch: tuple[Tensor, Tensor]) -> Tensor:
    """0.5 * mean over the rows of ||x W + b - y||^2."""
    x, y = batch
    w, b = weights
    return 0.5 * ((x @ w + b - y) ** 2).sum(dim=1).mean()


def gradient(weights: list[Tensor], batch: tuple[Tensor, Tensor]) -> list[Tensor]:
    """By hand: r = x W + b - y, dW = x^T r / n, db = sum_n r / n."""
    x, y = batch
    w, b = weights
    r = x @ w + b - y
    return [x.T @ r / x.shape[0], r.sum(dim=0) / x.shape[0]]


class Counted:
    """A torch.optim closure on `params` that counts its calls."""

    def __init__(self, params: list[nn.Parameter], batch: tuple[Tensor, Tensor]) -> None:
        self.params, self.batch, self.calls = params, batch, 0

    def __call__(self) -> Tensor:
        self.calls += 1
        for p in self.params:
            p.grad = None
        loss = loss_of(list(self.params), self.batch)
        loss.backward()
        return loss


def parameters() -> list[nn.Parameter]:
    return [nn.Parameter(w.clone()) for w in start()]


def run(
    optimizer_class: type[torch.optim.Optimizer], data: list[tuple[Tensor, Tensor]], **settings
) -> list[list[Tensor]]:
    """The weights after each step of `optimizer_class` over `data`."""
    params = parameters()
    optimizer = optimizer_class(params, **settings)
    trajectory = []
    for batch in data:
        optimizer.step(Counted(params, batch))
        trajectory.append([p.detach().clone() for p in params])
    return trajectory


def assert_same(actual: list[list[Tensor]], expected: list[list[Tensor]]) -> None:
    for step, (got, want) in enumerate(zip(actual, expected, strict=True), start=1):
        for p, q in zip(got, want, strict=True):
            torch.testing.assert_close(p, q, **TIGHT, msg=lambda m, s=step: f"step {s}: {m}")


def distance(a: list[list[Tensor]], b: list[list[Tensor]]) -> float:
    """The largest relative difference between two trajectories, over steps and entries."""
    return max(
        float(((p - q).abs() / q.abs().clamp_min(1e-12)).max())
        for x, y in zip(a, b, strict=True)
        for p, q in zip(x, y, strict=True)
    )


# --------------------------------------------------------------------------- SGDW
def sgdw_reference(
    data: list[tuple[Tensor, Tensor]],
    lrs: list[float],
    mu: float,
    d: float,
    wd: float,
    l2: float,
    decay_lr: list[float] | None = None,
) -> list[list[Tensor]]:
    """m <- mu m + (1-d)(g + l2 W) from 0, W <- (1 - lr_t wd) W - lr_t m; `decay_lr`, when
    given, is the learning rate used in the decay instead (a near miss)."""
    weights = start()
    m = [torch.zeros_like(w) for w in weights]
    trajectory = []
    for t, batch in enumerate(data):
        lr, lr_decay = lrs[t], (decay_lr or lrs)[t]
        grads = [g + l2 * w for g, w in zip(gradient(weights, batch), weights, strict=True)]
        new = []
        for i, (w, g) in enumerate(zip(weights, grads, strict=True)):
            m[i] = mu * m[i] + (1 - d) * g
            new.append((1 - lr_decay * wd) * w - lr * m[i])
        weights = new
        trajectory.append(weights)
    return trajectory


@pytest.mark.parametrize("wd", [0.01, 0.5])  # the TNT code's CIFAR-10 setting, and a large one
def test_sgdw_decays_with_the_current_learning_rate(wd: float) -> None:
    """The TNT code's SGD-m: W <- (1 - lr_t wd) W - lr_t m, lr_t from a scheduler that changes
    it between steps (x0.1 every 2 steps from 0.03)."""
    data = batches(STEPS)
    params = parameters()
    optimizer = SGDW(params, lr=0.03, momentum=0.9, momentum_dampening=0.0, weight_decay=wd)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.1)
    lrs, trajectory = [], []
    for batch in data:
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step(Counted(params, batch))
        scheduler.step()
        trajectory.append([p.detach().clone() for p in params])
    assert lrs == pytest.approx([0.03, 0.03, 0.003, 0.003, 0.0003, 0.0003])
    assert_same(trajectory, sgdw_reference(data, lrs, 0.9, 0.0, wd, 0.0))
    # the near misses: decay at the initial lr, and torch.optim.SGD's coupled weight decay
    at_initial_lr = sgdw_reference(data, lrs, 0.9, 0.0, wd, 0.0, decay_lr=[0.03] * STEPS)
    assert distance(trajectory, at_initial_lr) > 1e-6
    coupled = sgdw_reference(data, lrs, 0.9, 0.0, 0.0, wd)  # = torch.optim.SGD(weight_decay=wd)
    assert distance(trajectory, coupled) > 1e-6


def test_sgdw_kbfgs_first_step_is_a_tenth_of_the_gradient() -> None:
    """The K-BFGS code's SGD-m, m <- 0.9 m + 0.1 (g + 1e-5 W) from 0: the first step is
    0.1 lr (g + 1e-5 W); torch.optim.SGD with dampening 0.9 takes lr (g + 1e-5 W)."""
    data = batches(STEPS)
    settings = {"lr": 0.3, "momentum": 0.9, "momentum_dampening": 0.9, "weight_decay": 0.0}
    trajectory = run(SGDW, data, **settings, l2=1e-5)
    w0 = start()
    for w1, w, g in zip(trajectory[0], w0, gradient(w0, data[0]), strict=True):
        torch.testing.assert_close(w1, w - 0.3 * 0.1 * (g + 1e-5 * w), **TIGHT)
    assert_same(trajectory, sgdw_reference(data, [0.3] * STEPS, 0.9, 0.9, 0.0, 1e-5))
    torch_sgd = run(torch.optim.SGD, data, lr=0.3, momentum=0.9, dampening=0.9, weight_decay=1e-5)
    for w1, w, g in zip(torch_sgd[0], w0, gradient(w0, data[0]), strict=True):
        torch.testing.assert_close(w1, w - 0.3 * (g + 1e-5 * w), **TIGHT)  # buffer starts at g
    assert distance(torch_sgd, trajectory) > 1e-3


def test_sgdw_without_dampening_or_decay_is_torch_sgd() -> None:
    data = batches(STEPS)
    ours = run(SGDW, data, lr=0.05, momentum=0.9, weight_decay=0.0, l2=0.01)
    assert_same(ours, run(torch.optim.SGD, data, lr=0.05, momentum=0.9, weight_decay=0.01))


# --------------------------------------------------------------------------- Adam
def adam_reference(
    data: list[tuple[Tensor, Tensor]],
    lr: float,
    mu: float,
    beta2: float,
    eps: float,
    wd: float,
    l2: float,
    square_of: str = "mhat",
) -> list[list[Tensor]]:
    """The TNT and K-BFGS codes' Adam, literally; square_of="g" is torch.optim.Adam's v."""
    weights = start()
    m = [torch.zeros_like(w) for w in weights]
    v = [torch.zeros_like(w) for w in weights]
    trajectory = []
    for t, batch in enumerate(data, start=1):
        grads = [g + l2 * w for g, w in zip(gradient(weights, batch), weights, strict=True)]
        new = []
        for i, (w, g) in enumerate(zip(weights, grads, strict=True)):
            m[i] = mu * m[i] + (1 - mu) * g
            mhat = m[i] / (1 - mu**t)
            v[i] = beta2 * v[i] + (1 - beta2) * (mhat**2 if square_of == "mhat" else g**2)
            vhat = v[i] / (1 - beta2**t)
            new.append((1 - lr * wd) * w - lr * mhat / (torch.sqrt(vhat) + eps))
        weights = new
        trajectory.append(weights)
    return trajectory


ADAM = {"lr": 0.01, "momentum": 0.9, "momentum_dampening": 0.9, "eps": 1e-4}


@pytest.mark.parametrize(
    "settings",
    [
        {"beta2": 0.999, "weight_decay": 0.0, "l2": 0.0},  # the TNT code (MNIST autoencoder)
        {"beta2": 0.9, "weight_decay": 0.0, "l2": 1e-5},  # the K-BFGS code
        {"beta2": 0.99, "weight_decay": 0.5, "l2": 0.1},  # both terms large enough to matter
    ],
    ids=["tnt", "kbfgs", "decay"],
)
def test_adam_on_momentum_follows_the_authors_update(settings: dict) -> None:
    data = batches(STEPS)
    expected = adam_reference(
        data,
        ADAM["lr"],
        ADAM["momentum"],
        settings["beta2"],
        ADAM["eps"],
        settings["weight_decay"],
        settings["l2"],
    )
    assert_same(run(AdamOnMomentum, data, **ADAM, **settings), expected)


def test_adam_on_momentum_first_steps_state() -> None:
    """m from 0 with dampening (m_1 = 0.1 g_1), mhat_1 = g_1, v_1 of mhat_1^2; at step 2, v
    of mhat_2^2 = (m_2 / (1 - 0.9^2))^2, not of g_2^2."""
    data = batches(2)
    params = parameters()
    optimizer = AdamOnMomentum(params, lr=0.01, beta2=0.9, eps=1e-4)
    w0 = start()
    g1 = gradient(w0, data[0])
    optimizer.step(Counted(params, data[0]))
    for p, w, g in zip(params, w0, g1, strict=True):
        state = optimizer.state[p]
        assert state["step"] == 1
        torch.testing.assert_close(state["momentum_buffer"], 0.1 * g, **TIGHT)
        torch.testing.assert_close(state["second_moment"], 0.1 * g**2, **TIGHT)  # (1-b2) mhat^2
        # vhat_1 = g^2: the first step is g / (|g| + eps), the same as Adam's
        torch.testing.assert_close(p.detach(), w - 0.01 * g / (g.abs() + 1e-4), **TIGHT)
    w1 = [p.detach().clone() for p in params]
    g2 = gradient(w1, data[1])
    optimizer.step(Counted(params, data[1]))
    for p, g_1, g_2 in zip(params, g1, g2, strict=True):
        m2 = 0.9 * 0.1 * g_1 + 0.1 * g_2
        mhat2 = m2 / (1 - 0.9**2)
        v2 = 0.9 * 0.1 * g_1**2 + 0.1 * mhat2**2
        torch.testing.assert_close(optimizer.state[p]["momentum_buffer"], m2, **TIGHT)
        torch.testing.assert_close(optimizer.state[p]["second_moment"], v2, **TIGHT)
        wrong = 0.9 * 0.1 * g_1**2 + 0.1 * g_2**2  # torch.optim.Adam's v
        assert not torch.allclose(optimizer.state[p]["second_moment"], wrong, rtol=1e-3)


def test_torch_adam_is_another_method() -> None:
    """torch.optim.Adam (v of g^2) agrees at step 1 (mhat_1 = g_1) and then departs from the
    authors' Adam by far more than the tolerance above, so a swap would fail the test."""
    data = batches(STEPS)
    authors = adam_reference(data, 0.01, 0.9, 0.9, 1e-4, 0.0, 0.0)
    of_g = adam_reference(data, 0.01, 0.9, 0.9, 1e-4, 0.0, 0.0, square_of="g")
    torch_adam = run(torch.optim.Adam, data, lr=0.01, betas=(0.9, 0.9), eps=1e-4)
    assert_same(torch_adam, of_g)  # the reference's "g" variant is torch's Adam
    assert_same(torch_adam[:1], authors[:1])
    assert distance(torch_adam[1:], authors[1:]) > 1e-4
    assert distance(run(AdamOnMomentum, data, lr=0.01, beta2=0.9, eps=1e-4), torch_adam) > 1e-4


def test_adam_bias_correction_needs_dampening_equal_to_momentum() -> None:
    """With d != mu, 1/(1 - mu^t) does not unbias the momentum; the TNT code asserts d = mu."""
    with pytest.raises(ValueError, match=r"momentum_dampening value: 0.0 \(must equal momentum"):
        AdamOnMomentum(parameters(), momentum=0.9, momentum_dampening=0.0)
    with pytest.raises(
        ValueError, match=r"momentum_dampening value: 0.9 \(must equal momentum=0.5"
    ):
        AdamOnMomentum([{"params": parameters(), "momentum": 0.5}])  # a group's own momentum
    AdamOnMomentum(parameters(), momentum=0.0, momentum_dampening=0.0)  # no momentum: m = g


def test_adam_with_a_constant_gradient_has_mhat_equal_to_it() -> None:
    """The reason for the correction: with d = mu, mhat_t = g for a constant g at every t."""
    p = nn.Parameter(torch.zeros(3, dtype=torch.float64))
    optimizer = AdamOnMomentum([p], lr=0.0, beta2=0.999)  # lr 0: W, and so g, stay put
    g = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    for t in range(1, 6):
        p.grad = g.clone()
        optimizer.step()
        mhat = optimizer.state[p]["momentum_buffer"] / (1 - 0.9**t)
        torch.testing.assert_close(mhat, g, **TIGHT)
        vhat = optimizer.state[p]["second_moment"] / (1 - 0.999**t)
        torch.testing.assert_close(vhat, g**2, **TIGHT)


# --------------------------------------------------------------------------- RMSprop
def rmsprop_reference(
    data: list[tuple[Tensor, Tensor]],
    warm: list[tuple[Tensor, Tensor]],
    lr: float,
    beta2: float,
    eps: float,
    l2: float,
    wd: float = 0.0,
) -> tuple[list[Tensor], list[list[Tensor]]]:
    """The K-BFGS code's RMSprop, literally: v_0 and the weights after each step."""
    weights = start()
    v = [torch.zeros_like(w) for w in weights]
    for j, batch in enumerate(warm, start=1):  # uniform average of (g + l2 W_0)^2
        grads = [g + l2 * w for g, w in zip(gradient(weights, batch), weights, strict=True)]
        v = [(j - 1) / j * v_i + (1 / j) * g**2 for v_i, g in zip(v, grads, strict=True)]
    v0 = list(v)
    m = [torch.zeros_like(w) for w in weights]
    trajectory = []
    for batch in data:
        grads = [g + l2 * w for g, w in zip(gradient(weights, batch), weights, strict=True)]
        new = []
        for i, (w, g) in enumerate(zip(weights, grads, strict=True)):
            m[i] = 0.9 * m[i] + 0.1 * g
            v[i] = beta2 * v[i] + (1 - beta2) * m[i] ** 2
            new.append((1 - lr * wd) * w - lr * m[i] / (torch.sqrt(v[i]) + eps))
        weights = new
        trajectory.append(weights)
    return v0, trajectory


RMSPROP = {"lr": 0.01, "beta2": 0.9, "eps": 1e-4, "l2": 1e-5}


@pytest.mark.parametrize("l2", [1e-5, 0.1])
def test_rmsprop_warm_start_and_steps_follow_the_authors_update(l2: float) -> None:
    data, warm = batches(STEPS), batches(3, seed=7)
    settings = {**RMSPROP, "l2": l2}
    v0, expected = rmsprop_reference(data, warm, **settings)
    params = parameters()
    optimizer = RMSpropOnMomentum(params, **settings)
    closures = [Counted(params, batch) for batch in warm]
    optimizer.warm_start(iter(closures))
    assert [c.calls for c in closures] == [1, 1, 1]
    for p, w, v in zip(params, start(), v0, strict=True):
        assert torch.equal(p.detach(), w)  # the warm start does not move the weights
        assert p.grad is None
        torch.testing.assert_close(optimizer.state[p]["second_moment"], v, **TIGHT)
        assert "momentum_buffer" not in optimizer.state[p]  # m starts at 0 at step 1
    # first step: m_1 = 0.1 (g_1 + l2 W_0), v_1 = 0.9 v_0 + 0.1 m_1^2
    w0 = start()
    g1 = [g + l2 * w for g, w in zip(gradient(w0, data[0]), w0, strict=True)]
    trajectory = []
    for index, batch in enumerate(data):
        optimizer.step(Counted(params, batch))
        trajectory.append([p.detach().clone() for p in params])
        if index == 0:
            for p, g, v, w in zip(params, g1, v0, w0, strict=True):
                m1 = 0.1 * g
                v1 = 0.9 * v + 0.1 * m1**2
                torch.testing.assert_close(optimizer.state[p]["momentum_buffer"], m1, **TIGHT)
                torch.testing.assert_close(optimizer.state[p]["second_moment"], v1, **TIGHT)
                expected_w1 = w - 0.01 * m1 / (v1.sqrt() + 1e-4)
                torch.testing.assert_close(p.detach(), expected_w1, **TIGHT)
    assert_same(trajectory, expected)


def test_rmsprop_without_warm_start_starts_v_at_zero() -> None:
    """warm_start=false: warm_start() runs no closure, v_0 = 0 (the code's zeros), so the
    first step is m_1 / (sqrt(0.1) |m_1| + eps)."""
    data = batches(STEPS)
    params = parameters()
    optimizer = RMSpropOnMomentum(params, **RMSPROP, warm_start=False)
    unused = Counted(params, data[0])
    optimizer.warm_start(iter([unused]))
    assert unused.calls == 0 and not optimizer.state
    w0 = start()
    optimizer.step(Counted(params, data[0]))
    for p, w, g in zip(params, w0, gradient(w0, data[0]), strict=True):
        m1 = 0.1 * (g + 1e-5 * w)
        step = m1 / (math.sqrt(0.1) * m1.abs() + 1e-4)
        torch.testing.assert_close(p.detach(), w - 0.01 * step, **TIGHT)
    _, expected = rmsprop_reference(data, [], **RMSPROP)
    assert_same(run(RMSpropOnMomentum, data, **RMSPROP, warm_start=False), expected)


def test_torch_rmsprop_is_another_method() -> None:
    """torch.optim.RMSprop squares g, not the momentum, and starts v at 0 with no warm start."""
    data = batches(STEPS)
    _, authors = rmsprop_reference(data, [], **RMSPROP)
    torch_rmsprop = run(
        torch.optim.RMSprop, data, lr=0.01, alpha=0.9, eps=1e-4, momentum=0.9, weight_decay=1e-5
    )
    assert distance(torch_rmsprop, authors) > 1e-3


def test_rmsprop_warm_start_stops_at_a_non_finite_loss() -> None:
    """A non-finite loss in the warm start is an error at the initial weights."""
    params = parameters()
    optimizer = RMSpropOnMomentum(params)
    x, y = batches(1)[0]
    poisoned = (x.clone(), y)
    poisoned[0][0, 0] = float("nan")
    with pytest.raises(RuntimeError, match="warm start: non-finite loss nan at the initial"):
        optimizer.warm_start(iter([Counted(params, poisoned)]))


# --------------------------------------------------------------------------- all three
ALL = {
    "sgdw": (SGDW, {}),
    "adam_on_momentum": (AdamOnMomentum, {}),
    "rmsprop_on_momentum": (RMSpropOnMomentum, {"warm_start": False}),
}


@pytest.mark.parametrize("name", sorted(ALL))
def test_a_non_finite_loss_changes_nothing_and_is_returned(name: str) -> None:
    cls, settings = ALL[name]
    params = parameters()
    optimizer = cls(params, lr=0.01, **settings)
    x, y = batches(1)[0]
    optimizer.step(Counted(params, (x, y)))
    weights = [p.detach().clone() for p in params]
    state = {
        p: {key: torch.as_tensor(value).clone() for key, value in optimizer.state[p].items()}
        for p in params
    }
    poisoned = (x.clone(), y)
    poisoned[0][0, 0] = float("nan")
    loss = optimizer.step(Counted(params, poisoned))
    assert loss != loss  # NaN, returned for the runner to record
    for p, w in zip(params, weights, strict=True):
        assert torch.equal(p.detach(), w)
        for key, value in state[p].items():
            assert torch.equal(torch.as_tensor(optimizer.state[p][key]), value)


@pytest.mark.parametrize("name", sorted(ALL))
def test_a_param_groups_own_settings_are_checked(name: str) -> None:
    cls, settings = ALL[name]
    with pytest.raises(ValueError, match=r"Invalid learning rate: -1\.0"):
        cls([{"params": parameters()[:1]}, {"params": parameters()[1:], "lr": -1.0}], **settings)


@pytest.mark.parametrize("name", sorted(ALL))
def test_step_without_a_closure_uses_the_gradients_there(name: str) -> None:
    """As in torch.optim: a step after an explicit backward pass."""
    cls, settings = ALL[name]
    data = batches(2)
    with_closure = run(cls, data, lr=0.01, **settings)
    params = parameters()
    optimizer = cls(params, lr=0.01, **settings)
    for index, batch in enumerate(data):
        Counted(params, batch)()
        assert optimizer.step() is None
        for p, q in zip(params, with_closure[index], strict=True):
            assert torch.equal(p.detach(), q)
