"""The conventions every curvature method shares (optimizers.base): with damping -> infinity and
the learning rate rescaled, each method takes torch.optim.SGD's momentum step; the schedule;
momentum dampening; decoupled weight decay; coupled l2."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from torch import nn

from optimizers.base import inverses_due
from optimizers.examples.diagonal import DiagonalFisher
from optimizers.kbfgs import KBFGS
from optimizers.kfac import KFAC
from optimizers.shampoo import Shampoo
from optimizers.tengrad import TENGraD
from optimizers.tnt import TNT
from tests.optimizers.problems import closure_for, take_steps, tiny_batches, tiny_convnet

HUGE = 1e12  # relative error of the limit ~ (size of the statistics) / damping
LR = 0.05


def kfac_limit(model: nn.Module, **settings: object) -> torch.optim.Optimizer:
    # (A + sqrt(lambda) I)^-1 M (G + sqrt(lambda) I)^-1 -> M / lambda
    damping = HUGE * 1e4  # the factors meet sqrt(lambda)
    return KFAC(model.parameters(), model=model, lr=LR * damping, damping=damping, **settings)


def shampoo_limit(model: nn.Module, **settings: object) -> torch.optim.Optimizer:
    # prod_i eps^(-1/(2k)) = eps^(-1/2) whatever the order k
    return Shampoo(model.parameters(), lr=LR * HUGE**0.5, eps=HUGE, **settings)


def tnt_limit(model: nn.Module, **settings: object) -> torch.optim.Optimizer:
    # prod_i 1/eps = eps^-k: one param group per tensor order k, each with lr * eps^k
    eps = 1e8
    groups: dict[int, list[torch.Tensor]] = {}
    for p in model.parameters():
        groups.setdefault(min(p.dim(), 3), []).append(p)
    return TNT(
        [{"params": params, "lr": LR * eps**order} for order, params in groups.items()],
        eps=eps,
        **settings,
    )


def diagonal_limit(model: nn.Module, **settings: object) -> torch.optim.Optimizer:
    return DiagonalFisher(model.parameters(), lr=LR * HUGE, eps=HUGE, **settings)


def tengrad_limit(model: nn.Module, **settings: object) -> torch.optim.Optimizer:
    # (F + gamma I)^-1 m = (m - U (N gamma I + K)^-1 U^T m) / gamma -> m / gamma
    return TENGraD(model.parameters(), model=model, lr=LR * HUGE, damping=HUGE, **settings)


def kbfgs_l_limit(model: nn.Module, **settings: object) -> torch.optim.Optimizer:
    # H_a -> (A + sqrt(lambda) I)^-1 -> I / sqrt(lambda), and H_g = I with no pairs kept
    # (history 0): D = H_g M H_a -> M / sqrt(lambda) on Linear layers, so their lr is
    # rescaled; the conv layers take the plain momentum step at lr. (With pairs, H_g is BFGS's
    # from the damped pairs, which no damping limit makes a multiple of I.)
    damping = HUGE * 1e4
    linear = [p for m in model.modules() if isinstance(m, nn.Linear) for p in m.parameters()]
    others = [p for p in model.parameters() if all(p is not q for q in linear)]
    settings = {"momentum_dampening": 0.0, "l2": 0.0, **settings}  # K-BFGS defaults: 0.9, 1e-5
    return KBFGS(
        [{"params": linear, "lr": LR * damping**0.5}, {"params": others}],
        model=model,
        lr=LR,
        damping=damping,
        inverse="lbfgs",
        history=0,
        **settings,
    )


LIMITS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "kfac": kfac_limit,
    "shampoo": shampoo_limit,
    "tnt": tnt_limit,
    "diagonal": diagonal_limit,
    "kbfgs_l": kbfgs_l_limit,
    "tengrad": tengrad_limit,
}
# TENGraD keeps no running statistic (the Fisher of the refresh step's mini-batch): it has
# neither curvature_every nor a warm start, and captures statistics every inverse_every steps.
WITHOUT_RUNNING_STATISTICS = {"tengrad"}
# settings that refresh the statistics at t = 0, 3, 6, ...
STATISTICS_EVERY_THIRD_STEP = {
    name: {"inverse_every": 3}
    if name in WITHOUT_RUNNING_STATISTICS
    else {"curvature_every": 3, "inverse_every": 6}
    for name in LIMITS
}


def warm_start(name: str, enabled: bool) -> dict[str, bool]:
    """The warm_start setting, for the methods that have one."""
    return {} if name in WITHOUT_RUNNING_STATISTICS else {"warm_start": enabled}


@pytest.mark.parametrize("l2", [0.0, 0.01])
@pytest.mark.parametrize("name", sorted(LIMITS))
def test_huge_damping_with_rescaled_lr_takes_the_sgd_momentum_step(name: str, l2: float) -> None:
    model = tiny_convnet()
    reference = copy.deepcopy(model)
    optimizer = LIMITS[name](model, momentum=0.9, l2=l2, **warm_start(name, False))
    sgd = torch.optim.SGD(reference.parameters(), lr=LR, momentum=0.9, weight_decay=l2)
    batches = tiny_batches(6)
    take_steps(optimizer, model, batches)
    take_steps(sgd, reference, batches)
    moved = 0.0
    for p, q, start in zip(
        model.parameters(), reference.parameters(), tiny_convnet().parameters(), strict=True
    ):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-9)
        moved += float((q - start).abs().sum().detach())
    assert moved > 0.1  # the comparison is between real steps


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_momentum_dampening_and_decoupled_weight_decay(name: str) -> None:
    model = tiny_convnet()
    start = copy.deepcopy(model)
    optimizer = LIMITS[name](
        model, momentum=0.9, momentum_dampening=0.1, weight_decay=0.2, **warm_start(name, False)
    )
    for group in optimizer.param_groups:  # lr*wd = LR*0.2 whatever the rescaled lr
        group["weight_decay"] = LR * 0.2 / group["lr"]
    batches = tiny_batches(2)
    expected = [p.detach().clone() for p in start.parameters()]
    buffers = [torch.zeros_like(p) for p in expected]
    for index, batch in enumerate(batches):
        take_steps(optimizer, model, [batch], seed=index)
        for p, w, m in zip(model.parameters(), expected, buffers, strict=True):
            m.mul_(0.9).add_(p.grad, alpha=0.9)  # m <- 0.9 m + (1 - 0.1) g, from m = 0
            w.mul_(1 - LR * 0.2).sub_(LR * m)  # W <- (1 - lr wd) W - lr m
        for p, w in zip(model.parameters(), expected, strict=True):
            torch.testing.assert_close(p, w, rtol=1e-6, atol=1e-9)


def test_inverse_schedule() -> None:
    due = [t for t in range(0, 45) if inverses_due(t, curvature_every=5, inverse_every=20)]
    assert due == [0, 5, 10, 15, 20, 40]
    assert [t for t in range(5) if inverses_due(t, 1, 1)] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_statistics_follow_curvature_every(name: str) -> None:
    model = tiny_convnet()
    optimizer = LIMITS[name](model, **STATISTICS_EVERY_THIRD_STEP[name], **warm_start(name, False))
    take_steps(optimizer, model, tiny_batches(7))
    assert optimizer.state["schedule"]["statistics_updates"] == 3  # t = 0, 3, 6
    assert optimizer.steps_taken == 7


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_a_non_finite_loss_changes_nothing_and_is_returned(name: str) -> None:
    model = tiny_convnet()
    optimizer = LIMITS[name](model, **warm_start(name, True))
    batches = tiny_batches(3)
    take_steps(optimizer, model, batches[:1])
    weights = [p.detach().clone() for p in model.parameters()]
    state = copy.deepcopy(optimizer.state_dict())
    poisoned = (batches[1][0].clone(), batches[1][1])
    poisoned[0][0, 0, 0, 0] = float("nan")
    (loss,) = take_steps(optimizer, model, [poisoned])
    assert loss != loss  # NaN, returned for the runner to record
    assert all(torch.equal(p, w) for p, w in zip(model.parameters(), weights, strict=True))
    assert optimizer.state_dict()["state"]["schedule"] == state["state"]["schedule"]
    if name in WITHOUT_RUNNING_STATISTICS:
        return  # no warm start
    with pytest.raises(RuntimeError, match="warm start: non-finite loss nan"):
        optimizer.warm_start([closure_for(model, poisoned)])


def test_the_inverse_schedule_without_early_inverses() -> None:
    """The TNT code's "-lessInverse" Shampoo: roots only when t % T2 == 0, from t = 0."""
    due = [t for t in range(45) if inverses_due(t, 1, 20, early=False)]
    assert due == [0, 20, 40]


# What the authors' codes do at step 0 after a warm start (the TNT code's utils_shampoo.py
# l.415-419 for TNT and Shampoo, utils_kfac.py l.287-301 for KFAC; the K-BFGS code's
# kbfgs_utils.py l.75-76 for K-BFGS's A): keep the warm start's average, or refresh it.
KEEPS_THE_WARM_START_AT_STEP_0 = {"tnt": True, "shampoo": True, "kbfgs_l": True, "kfac": False}


@pytest.mark.parametrize("name", sorted(KEEPS_THE_WARM_START_AT_STEP_0))
def test_step_zero_after_a_warm_start_keeps_or_refreshes_the_statistics(name: str) -> None:
    model = tiny_convnet()
    optimizer = LIMITS[name](model, **warm_start(name, True))
    batches = tiny_batches(4)
    optimizer.warm_start(closure_for(model, batch) for batch in batches[:3])
    after_warm_start = copy.deepcopy(statistics(optimizer))
    take_steps(optimizer, model, batches[3:])
    kept = all(
        torch.equal(a, b) for a, b in zip(after_warm_start, statistics(optimizer), strict=True)
    )
    assert kept == KEEPS_THE_WARM_START_AT_STEP_0[name]
    take_steps(optimizer, model, batches[:1], seed=5)  # step 1 refreshes them in every method
    assert not any(
        torch.equal(a, b) for a, b in zip(after_warm_start, statistics(optimizer), strict=True)
    )


def statistics(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """Every running statistic of the optimizer (KFAC's A and G, Shampoo's and TNT's factors,
    K-BFGS's A), in a fixed order."""
    names = ("activation_factor", "gradient_factor", "factors")
    found = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            for name in names:
                value = state.get(name)
                if isinstance(value, torch.Tensor):
                    found.append(value)
                elif isinstance(value, list):
                    found += [factor for factor in value if factor is not None]
    assert found, "no statistics found"
    return found
